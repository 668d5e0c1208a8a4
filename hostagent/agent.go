package hostagent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/codefetch"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/hostagent/netns"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Agent is a host agent. New builds one; Run serves until its context ends.
type Agent struct {
	cfg   Config
	deps  Deps
	store *pool.Store
	log   zerolog.Logger

	ready   chan struct{}
	running atomic.Bool
	addr    atomic.Pointer[string]
	sem     chan struct{} // bounds instance starts
	refill  chan struct{} // wakes the manager to top up the warming pool

	// bg carries instance starts and teardowns; cancelled at shutdown after
	// dispatches drained.
	bg       context.Context
	cancelBg context.CancelFunc

	mu       sync.Mutex
	insts    map[string]*instance
	ahead    map[string]*ahead       // by class: defined, not booted (ahead.go)
	subpools map[string]pool.SubPool // by name
	closing  bool
	starts   sync.WaitGroup   // instance boots in flight
	roomBusy bool             // roomFor is retiring instances (room.go)
	watchers sync.WaitGroup   // one per ready instance, until its connection ends
	trees    *codefetch.Trees // packages extracted once per host (<StateDir>/codes)
	seq      uint64           // container id counter
	// netnsHelper makes a booting instance's first network namespace
	// (earlySpare); nil without a network or util-linux's programs.
	netnsHelper *netns.Helper
	meterSeq    atomic.Uint64 // invocations, for sampling the meter's CPU
	// boostMu guards instances' boosts and orders their quota writes.
	boostMu sync.Mutex

	// acct is set by Run before serving (nil: accounting off).
	acct         Accounting
	usageMetrics *usageMetrics

	// local serves a scheduler in this process (LocalClient).
	local *localServer
	// left counts the instances shutdown left running (reattach.go).
	left atomic.Int32
	// registered: Run registered the agent in Redis.
	registered atomic.Bool
}

// New returns an agent. It validates cfg (after defaults) and deps.
func New(cfg Config, deps Deps) (*Agent, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := deps.validate(); err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:    cfg,
		deps:   deps,
		store:  deps.Pool,
		log:    deps.Log.With().Str("component", "agent").Str("agent", cfg.AgentID).Logger(),
		ready:  make(chan struct{}),
		sem:    make(chan struct{}, cfg.StartConcurrency),
		refill: make(chan struct{}, 1),
		insts:  map[string]*instance{},
		ahead:  map[string]*ahead{},
		trees:  codefetch.NewTrees(filepath.Join(cfg.StateDir, "codes"), deps.Code, cfg.CodeCacheMB<<20),
	}
	a.bg, a.cancelBg = context.WithCancel(context.Background())
	if deps.Network != nil {
		if h, err := netns.LookHelper(); err != nil {
			a.log.Warn().Err(err).Msg("a booting instance's first network namespace is made once ember-init answers")
		} else {
			a.netnsHelper = &h
		}
	}
	um, err := newUsageMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	a.usageMetrics = um
	a.local = newLocalServer(a)
	return a, nil
}

// Config returns the agent's configuration with defaults applied.
func (a *Agent) Config() Config { return a.cfg }

// Ready is closed once the agent is registered and its initial warming pool
// has been started and added to Redis (instances that failed to start are
// retried later and not waited for).
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Addr is the address registered for schedulers; empty before Run listens.
func (a *Agent) Addr() string {
	if p := a.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// Run takes back the instances a clean stop of this agent left running and
// cleans up the rest of its previous life, registers it, fills the warming
// pool and serves Dispatch until ctx is done; then it stops accepting
// dispatches, drains those in flight, removes the agent from Redis and
// destroys every instance (with KeepInstances: leaves the idle ones
// running for the next start). It returns an error if the agent could
// not start, or if no instance of a non-empty warming pool could be started.
// Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("hostagent: Run called twice")
	}
	defer a.cancelBg()
	kept, err := a.cleanupStale(ctx)
	if err != nil {
		a.shutdown() // the instances it took back
		return err
	}
	if a.deps.Network != nil {
		if err := a.deps.Network.Setup(ctx, keptNets(kept)); err != nil {
			a.shutdown()
			return fmt.Errorf("hostagent: %w", err)
		}
		defer func() { // after shutdown detached every container
			if a.left.Load() > 0 {
				return // its rules still guard the containers left running
			}
			cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.deps.Network.Close(cctx); err != nil {
				a.log.Warn().Err(err).Msg("close the network")
			}
		}()
	}
	a.acct = openAccounting(a.cfg.Accounting, a.deps.Accounting, a.log)
	if a.acct != nil && a.deps.Accounting == nil {
		defer a.acct.Close() // after shutdown destroyed every container
	}
	a.measureReattached(kept)
	if a.deps.State != nil {
		defer func() { // after shutdown detached every instance
			if err := a.deps.State.Close(); err != nil {
				a.log.Warn().Err(err).Msg("unmount state resources")
			}
		}()
	}
	lis, err := net.Listen("tcp", a.cfg.ListenAddr)
	if err != nil {
		a.shutdown()
		return fmt.Errorf("hostagent: listen %s: %w", a.cfg.ListenAddr, err)
	}
	addr := a.cfg.AdvertiseAddr
	if addr == "" {
		addr = lis.Addr().String()
	}
	a.addr.Store(&addr)
	if err := a.store.RegisterAgent(ctx, pool.Agent{ID: a.cfg.AgentID, Addr: addr, Started: time.Now(), Capacity: a.cfg.Capacity}, a.cfg.HeartbeatTTL); err != nil {
		lis.Close()
		a.shutdown()
		return fmt.Errorf("hostagent: %w", err)
	}
	a.registered.Store(true)
	if err := a.readd(ctx, kept); err != nil {
		lis.Close()
		a.shutdown()
		return fmt.Errorf("hostagent: put reattached instances back: %w", err)
	}
	a.watchReattached(kept)
	a.log.Info().Str("addr", addr).Str("state_dir", a.cfg.StateDir).Int("reattached", len(kept)).Msg("agent registered")

	// Subscribe before Ready, so that no demand published after Ready is missed.
	sub := a.deps.Redis.Subscribe(ctx, a.store.DemandChannel(), a.store.RetireChannel(), a.store.SubPoolsChannel())
	defer sub.Close()
	for range 3 { // one confirmation per channel
		if _, err := sub.Receive(ctx); err != nil {
			lis.Close()
			a.shutdown()
			return fmt.Errorf("hostagent: subscribe %s: %w", a.store.DemandChannel(), err)
		}
	}
	if err := a.loadSubPools(ctx); err != nil { // after subscribing: no change is missed
		lis.Close()
		a.shutdown()
		return fmt.Errorf("hostagent: %w", err)
	}

	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(a.deps.TLS)), grpc.MaxRecvMsgSize(dispatchpb.MaxMessageBytes), grpc.MaxSendMsgSize(dispatchpb.MaxMessageBytes))
	dispatchpb.RegisterAgentServer(srv, &dispatchServer{a: a})

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(lis); err != nil {
			return fmt.Errorf("hostagent: serve: %w", err)
		}
		return nil
	})
	g.Go(func() error { return a.heartbeatLoop(gctx) })
	g.Go(func() error { return a.demandLoop(gctx, sub) })
	g.Go(func() error { return a.manage(gctx) })
	g.Go(func() error {
		<-gctx.Done()
		a.stopServing(srv)
		return nil
	})
	runErr := g.Wait()
	if runErr != nil && ctx.Err() == nil {
		a.log.Error().Err(runErr).Msg("agent failed; shutting down")
	}
	a.shutdown()
	if ctx.Err() != nil && errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	return runErr
}

// stopServing stops accepting dispatches and waits for those in flight,
// for at most ShutdownTimeout.
func (a *Agent) stopServing(srv *grpc.Server) {
	a.local.stop() // at once, as GracefulStop's GOAWAY does for remote callers
	done := make(chan struct{})
	go func() { // owned: waited for below, or ended by srv.Stop and cutOff
		srv.GracefulStop()
		a.local.wait()
		close(done)
	}()
	t := time.NewTimer(a.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		a.log.Warn().Msg("dispatches still running at the shutdown timeout; cutting them off")
		srv.Stop()
		a.local.cutOff()
		<-done
	}
}

// shutdown removes the agent from Redis and destroys every instance, or,
// with Config.KeepInstances, leaves those it may running for the next
// start (reattach.go).
func (a *Agent) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.mu.Lock()
	a.closing = true
	a.mu.Unlock()
	if a.registered.Load() { // not when Redis failed the start
		if err := a.store.RemoveAgent(ctx, a.cfg.AgentID); err != nil {
			a.log.Error().Err(err).Msg("remove agent from redis")
		}
	}
	a.cancelBg()
	a.starts.Wait()
	a.dropAllAhead(ctx)
	a.mu.Lock()
	all := make([]*instance, 0, len(a.insts))
	for _, in := range a.insts {
		all = append(all, in)
	}
	a.mu.Unlock()
	var g errgroup.Group
	g.SetLimit(4)
	for _, in := range all {
		g.Go(func() error {
			if a.leave(in) {
				a.left.Add(1)
				return nil
			}
			a.destroy(ctx, in, "agent shutdown")
			return nil
		})
	}
	_ = g.Wait()
	a.watchers.Wait()
	a.log.Info().Int("instances", len(all)).Int32("left_running", a.left.Load()).Msg("agent stopped")
}

// cleanupStale takes back the instances a clean stop of this agent left
// running (reattach) and removes everything else a previous life left: its
// Redis entries, its other instances in the runtime and their directories.
// It returns the instances it took back.
func (a *Agent) cleanupStale(ctx context.Context) ([]*instance, error) {
	if err := a.store.RemoveAgent(ctx, a.cfg.AgentID); err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	ids, err := a.deps.Runtime.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("hostagent: list stale instances: %w", err)
	}
	kept := a.reattach(ctx, ids)
	keep := make(map[string]bool, len(kept))
	for _, in := range kept {
		keep[in.id] = true
	}
	var g errgroup.Group
	g.SetLimit(a.cfg.StartConcurrency)
	for _, id := range ids {
		if keep[id] {
			continue
		}
		g.Go(func() error {
			if err := a.deps.Runtime.Destroy(ctx, id); err != nil {
				return fmt.Errorf("hostagent: destroy stale instance %s: %w", id, err)
			}
			a.log.Info().Str("instance", id).Msg("destroyed stale instance")
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return kept, err
	}
	// runc mounts an instance's directories from inside its user namespace:
	// the state directory must be searchable by others (and so must its
	// ancestors, which the agent does not touch).
	if err := os.MkdirAll(a.cfg.StateDir, 0o711); err != nil {
		return kept, fmt.Errorf("hostagent: state dir: %w", err)
	}
	insts := filepath.Join(a.cfg.StateDir, "instances")
	if err := os.MkdirAll(insts, 0o711); err != nil {
		return kept, fmt.Errorf("hostagent: state dir: %w", err)
	}
	entries, err := os.ReadDir(insts)
	if err != nil {
		return kept, fmt.Errorf("hostagent: clean state dir: %w", err)
	}
	for _, e := range entries {
		if keep[e.Name()] {
			continue
		}
		dir := filepath.Join(insts, e.Name())
		if r, err := readRecord(dir); err == nil { // left running, gone since
			a.forgetRecord(ctx, r)
		}
		if a.deps.State != nil { // a crash leaves resources attached: never remove through them
			if err := a.deps.State.Release(dir); err != nil {
				return kept, fmt.Errorf("hostagent: detach stale state resources: %w", err)
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			return kept, fmt.Errorf("hostagent: clean state dir: %w", err)
		}
	}
	return kept, nil
}

// heartbeatLoop renews the agent's key; if it had expired, the agent
// registers again and puts its instances back.
func (a *Agent) heartbeatLoop(ctx context.Context) error {
	t := time.NewTicker(a.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		alive, err := a.store.Heartbeat(ctx, a.cfg.AgentID, a.cfg.HeartbeatTTL)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn().Err(err).Msg("heartbeat")
			}
			continue
		}
		a.reportUsed(ctx)
		a.reportState(ctx)
		if !alive {
			a.log.Warn().Msg("heartbeat key had expired; registering again")
			if err := a.reregister(ctx); err != nil && ctx.Err() == nil {
				a.log.Error().Err(err).Msg("re-register")
			}
		}
	}
}

// reregister registers the agent again and puts back every instance that
// Redis no longer holds (its heartbeat key had expired, or Redis lost its
// data): warming ones into the warming pool, tenants' ones into their
// active pool with their hot versions. Pool state is rebuilt from what the
// agent knows.
func (a *Agent) reregister(ctx context.Context) error {
	if err := a.store.RegisterAgent(ctx, pool.Agent{ID: a.cfg.AgentID, Addr: a.Addr(), Started: time.Now(), Capacity: a.cfg.Capacity}, a.cfg.HeartbeatTTL); err != nil {
		return err
	}
	known, err := a.store.Instances(ctx, a.cfg.AgentID)
	if err != nil {
		return err
	}
	inRedis := map[string]bool{}
	for _, in := range known {
		inRedis[in.ID] = true
	}
	type readd struct {
		id, class, tenant string
		hot               []string
	}
	var todo []readd
	a.mu.Lock()
	for _, in := range a.insts {
		if in.state != stReady || inRedis[in.id] {
			continue
		}
		r := readd{id: in.id, class: in.class, tenant: in.tenant}
		if in.op.TryLock() { // no dispatch is changing its containers
			for _, c := range in.containers {
				r.hot = append(r.hot, c.versionKey)
			}
			in.op.Unlock()
		}
		in.missing, in.lost = 0, false
		todo = append(todo, r)
	}
	a.mu.Unlock()
	for _, r := range todo {
		if err := a.addBack(ctx, r.id, r.class, r.tenant, r.hot); err != nil {
			return err
		}
	}
	a.log.Info().Int("readded", len(todo)).Msg("agent registered again")
	a.kickRefill()
	return nil
}

// addBack puts a ready instance back into Redis: into the warming pool,
// or into its tenant's active pool with the versions hot on it.
func (a *Agent) addBack(ctx context.Context, id, class, tenant string, hot []string) error {
	if tenant == "" {
		return a.store.AddWarm(ctx, id, a.cfg.AgentID, class)
	}
	return a.store.AddActive(ctx, id, a.cfg.AgentID, class, tenant, hot)
}

// demandLoop starts an instance when a scheduler found none of a class,
// and stops the containers of functions that were deleted.
func (a *Agent) demandLoop(ctx context.Context, sub *redis.PubSub) error {
	ch := sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return nil
			}
			switch m.Channel {
			case a.store.RetireChannel():
				a.onRetire(m.Payload)
			case a.store.SubPoolsChannel():
				a.onSubPoolsChanged(ctx)
			default:
				a.onDemand(ctx, m.Payload)
			}
		}
	}
}

// onRetire stops, in the background, every container of the deleted
// function "<tenant>/<function>" on this agent's instances.
func (a *Agent) onRetire(fn string) {
	prefix := fn + "/"
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		return
	}
	var ins []*instance
	for _, in := range a.insts {
		if in.state == stReady && strings.HasPrefix(prefix, in.tenant+"/") {
			ins = append(ins, in)
		}
	}
	a.starts.Add(len(ins)) // waited for at shutdown, like instance boots
	a.mu.Unlock()
	for _, in := range ins {
		go func() {
			defer a.starts.Done()
			in.op.Lock() // after a dispatch's container set-up
			defer in.op.Unlock()
			var stop []*container
			a.mu.Lock()
			for _, c := range in.containers {
				if strings.HasPrefix(c.versionKey, prefix) {
					stop = append(stop, c)
				}
			}
			a.mu.Unlock()
			for _, c := range stop { // one running stops when its invocation ends
				a.retireContainer(in, c, true, "function deleted")
			}
		}()
	}
}

// onDemand handles "<class>" (every agent) or "<class> <agent id>" (the
// one the placement chose).
func (a *Agent) onDemand(ctx context.Context, msg string) {
	class, target, _ := strings.Cut(msg, " ")
	if target != "" && target != a.cfg.AgentID {
		return
	}
	a.mu.Lock()
	for _, in := range a.insts {
		if in.class == class && in.state == stStarting {
			a.mu.Unlock()
			return // one is on its way; it will be claimable soon
		}
	}
	if sp, ok := a.subPoolLocked(class); ok {
		a.mu.Unlock()
		if !a.startSubPoolInstance(ctx, sp, false) {
			a.log.Info().Str("class", class).Msg("demand: the sub-pool is at its maximum or the host is full")
		}
		return
	}
	if _, err := pool.ClassMemory(class); err != nil {
		a.mu.Unlock()
		a.log.Warn().Str("class", class).Msg("demand for an unknown class ignored")
		return
	}
	in := a.reserveLocked(class, nil, true)
	if in == nil {
		// Full: idle instances may give their room (room.go), one demand
		// at a time (a waiter asks again while it waits).
		if a.roomBusy || a.closing {
			a.mu.Unlock()
			return
		}
		a.roomBusy = true
		a.starts.Add(1)
		a.mu.Unlock()
		go func() {
			defer a.starts.Done()
			if !a.roomFor(a.bg, class) {
				a.log.Warn().Str("class", class).Int("max", a.cfg.MaxInstances).Msg("demand: host full; no room made here (no idle instances enough, or another agent's turn)")
			}
			a.mu.Lock()
			a.roomBusy = false
			a.mu.Unlock()
			a.kickRefill() // what was left out meanwhile
		}()
		return
	}
	a.mu.Unlock()
	a.log.Info().Str("class", class).Str("instance", in.id).Msg("starting an instance on demand")
	go a.bootAsync(in)
}

func (a *Agent) kickRefill() {
	select {
	case a.refill <- struct{}{}:
	default:
	}
}

// manage fills the initial warming pool, then keeps it topped up and
// reclaims idle containers and instances.
func (a *Agent) manage(ctx context.Context) error {
	if err := a.initialFill(ctx); err != nil {
		return err
	}
	close(a.ready)
	a.defineAhead()
	t := time.NewTicker(a.reclaimInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.refill:
		case <-t.C:
		}
		// Reloaded on every pass too: a change notice lost during a
		// reconnect must not leave the definitions stale.
		if err := a.loadSubPools(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn().Err(err).Msg("reload sub-pools")
		}
		a.reclaim(ctx)
		a.ensureWarm()
		a.ensureSubPools(ctx)
		a.defineAhead()
	}
}

func (a *Agent) reclaimInterval() time.Duration {
	d := min(a.cfg.ContainerKeepAlive, a.cfg.InstanceKeepAlive) / 4
	return min(max(d, 10*time.Millisecond), 15*time.Second)
}

// initialFill starts the warming pool (less the warm instances it
// reattached) and waits for it.
func (a *Agent) initialFill(ctx context.Context) error {
	var todo []*instance
	a.mu.Lock()
	warm := a.warmLocked()
	for _, class := range a.cfg.classes() {
		for range a.cfg.Pool[class] - warm[class] {
			if in := a.reserveLocked(class, nil, false); in != nil {
				todo = append(todo, in)
			}
		}
	}
	a.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	start := time.Now()
	var ok atomic.Int32
	var wg sync.WaitGroup
	for _, in := range todo {
		wg.Go(func() {
			if a.bootAsync(in) {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if ok.Load() == 0 {
		return fmt.Errorf("hostagent: none of the %d warming pool instances started (see the log)", len(todo))
	}
	a.log.Info().Int32("started", ok.Load()).Int("wanted", len(todo)).Dur("took", time.Since(start)).Msg("warming pool filled")
	return nil
}

// ensureWarm starts instances so that each class has its target of
// unassigned instances (ready or starting). Not while room is being made
// for a waiter (room.go): the room it frees is the waiter's; the refill
// comes after.
func (a *Agent) ensureWarm() {
	var todo []*instance
	a.mu.Lock()
	if a.roomBusy {
		a.mu.Unlock()
		return
	}
	warm := a.warmLocked()
	for _, class := range a.cfg.classes() {
		for n := warm[class]; n < a.cfg.Pool[class]; n++ {
			in := a.reserveLocked(class, nil, false)
			if in == nil {
				break
			}
			todo = append(todo, in)
		}
	}
	a.mu.Unlock()
	for _, in := range todo {
		go a.bootAsync(in)
	}
}

// warmLocked counts the unassigned instances (ready or starting) by class
// (a sub-pool's are of its own class). a.mu held.
func (a *Agent) warmLocked() map[string]int {
	warm := map[string]int{}
	for _, in := range a.insts {
		if in.tenant == "" && in.state != stGone {
			warm[in.class]++
		}
	}
	return warm
}

// liveLocked counts the instances not gone (starting, ready). a.mu held.
func (a *Agent) liveLocked() int {
	n := 0
	for _, in := range a.insts {
		if in.state != stGone {
			n++
		}
	}
	return n
}

// reserveLocked books a slot for a new instance of class (of sub-pool sp,
// when set) and registers the boot with a.starts. It returns nil if the
// host is full (instances, memory or CPU) or closing. a.mu held.
func (a *Agent) reserveLocked(class string, sp *pool.SubPool, fromDemand bool) *instance {
	if a.closing {
		return nil
	}
	if a.liveLocked() >= a.cfg.MaxInstances {
		return nil
	}
	need, ok := pool.FixedNeeds(class)
	if sp != nil {
		need, ok = sp.Needs(), true
	}
	if !ok || !a.cfg.Capacity.Fits(a.usedLocked().Add(need)) {
		return nil
	}
	var in *instance
	if sp == nil {
		in = a.takeAheadLocked(class) // its container made already
	}
	if in == nil {
		in = a.newInstanceLocked(class, sp, a.slotLocked())
	}
	in.fromDemand = fromDemand
	a.insts[in.id] = in
	a.starts.Add(1)
	return in
}

// newInstanceLocked is a new instance of class (of sub-pool sp, when set)
// in uid-range slot, not registered anywhere yet. a.mu held.
func (a *Agent) newInstanceLocked(class string, sp *pool.SubPool, slot int) *instance {
	need, _ := pool.FixedNeeds(class)
	if sp != nil {
		need = sp.Needs()
	}
	id := newInstanceID()
	return &instance{
		id: id, class: class, memoryMB: need.MemoryMB, needs: need, subpool: sp,
		slot: slot, hostUID: a.cfg.MappedRootUID + slot*a.cfg.UIDRange,
		dir:        filepath.Join(a.cfg.StateDir, "instances", id),
		state:      stStarting,
		containers: map[string]*container{}, parked: map[string]*parked{},
		codes: map[string]bool{},
	}
}

func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return "i" + hex.EncodeToString(b[:])
}
