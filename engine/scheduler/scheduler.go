package scheduler

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/internal/pki"
)

// Resolver finds the version an invocation runs.
type Resolver interface {
	// Resolve MUST return an error wrapping registry.ErrNotFound for an
	// unknown function or qualifier.
	Resolve(ctx context.Context, tenant, function, qualifier string) (registry.Version, error)
}

// Config tunes the scheduler. The zero value is valid.
type Config struct {
	// MaxWaiting bounds invocations waiting for a free instance. Default: 1024.
	MaxWaiting int
	// MaxQueueWait bounds how long an invocation without its own deadline
	// waits for an instance. Default: 30s.
	MaxQueueWait time.Duration
	// LeaseGrace is added to an invocation's deadline to form its claim
	// lease; a claim held past its lease (its scheduler died) returns to the
	// pool. Default: 30s.
	LeaseGrace time.Duration
	// DemandEvery is how often a waiting invocation repeats its request for a
	// new instance. Default: 1s.
	DemandEvery time.Duration
	// ReapEvery is how often expired leases are collected. Default: 5s.
	ReapEvery time.Duration
	// DispatchAttempts bounds tries on another instance when an agent lost
	// the claimed instance before running anything. Default: 3.
	DispatchAttempts int
	// HoldIdle is how long a claim is kept after an invocation with a
	// HoldKey, for the next invocation of its version to run without a
	// claim or a release in Redis (holds.go). At most 1s. Default: 50ms;
	// negative: never kept.
	HoldIdle time.Duration
}

func (c *Config) setDefaults() {
	if c.MaxWaiting == 0 {
		c.MaxWaiting = 1024
	}
	if c.MaxQueueWait == 0 {
		c.MaxQueueWait = 30 * time.Second
	}
	if c.LeaseGrace == 0 {
		c.LeaseGrace = 30 * time.Second
	}
	if c.DemandEvery == 0 {
		c.DemandEvery = time.Second
	}
	if c.ReapEvery == 0 {
		c.ReapEvery = 5 * time.Second
	}
	if c.DispatchAttempts == 0 {
		c.DispatchAttempts = 3
	}
	if c.HoldIdle == 0 {
		c.HoldIdle = 50 * time.Millisecond
	}
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.MaxWaiting < 0 || c.MaxQueueWait < 0 || c.LeaseGrace < 0 || c.DemandEvery < 0 || c.ReapEvery < 0 || c.DispatchAttempts < 0 {
		return errors.New("scheduler: negative limits in config")
	}
	if c.HoldIdle > time.Second {
		// A held instance is busy to everyone else: long holds would
		// starve other callers and outlive an agent's restart.
		return fmt.Errorf("scheduler: HoldIdle %v: at most 1s", c.HoldIdle)
	}
	return nil
}

// Scheduler runs invocations on pooled instances. Start Run for wake-ups on
// released instances and lease collection; Invoke works without it, falling
// back to DemandEvery polling.
type Scheduler struct {
	cfg      Config
	pool     *pool.Store
	resolver Resolver
	agents   *agentConns
	queues   *queues
	waits    waitLog
	holds    *holds
	subpools *subPoolCache
	// logServices resolves invocations' logging services (nil: none).
	logServices LogServices
	waiting     atomic.Int64
	log         zerolog.Logger
	m           *metrics
}

// Option configures a Scheduler.
type Option func(*Scheduler) error

// WithLogger sets the logger. Default: disabled.
func WithLogger(l zerolog.Logger) Option {
	return func(s *Scheduler) error { s.log = l.With().Str("component", "scheduler").Logger(); return nil }
}

// WithMetrics registers the scheduler's metrics on reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(s *Scheduler) error { return s.m.register(reg) }
}

// WithTLS sets the scheduler's identity towards agents: an emberd
// certificate, and the authority agents' certificates must chain to. Each
// agent must present an agent certificate naming its id. Required: agents
// accept dispatches only over mutual TLS.
func WithTLS(cert tls.Certificate, roots *x509.CertPool) Option {
	return func(s *Scheduler) error {
		if len(cert.Certificate) == 0 || roots == nil {
			return errors.New("scheduler: WithTLS needs a certificate and a trust root")
		}
		s.agents.creds = func(agentID string) credentials.TransportCredentials {
			return credentials.NewTLS(pki.ClientConfig(cert, roots, pki.RoleAgent, agentID))
		}
		return nil
	}
}

// UseLocalAgent makes dispatches to agent id calls of c: an agent in this
// process (emberd's in-process agent; see hostagent.Agent.LocalClient),
// reached without a connection. Its errors are gRPC statuses as a remote
// agent's are.
func (s *Scheduler) UseLocalAgent(id string, c dispatchpb.AgentClient) {
	s.agents.mu.Lock()
	s.agents.local[id] = c
	s.agents.mu.Unlock()
}

// New returns a scheduler over the pool state and registry.
func New(cfg Config, p *pool.Store, r Resolver, opts ...Option) (*Scheduler, error) {
	if p == nil || r == nil {
		return nil, errors.New("scheduler: pool store and resolver are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Scheduler{
		cfg: cfg, pool: p, resolver: r,
		agents:   newAgentConns(p),
		queues:   newQueues(),
		subpools: &subPoolCache{store: p},
		log:      zerolog.Nop(),
		m:        newMetrics(),
	}
	s.holds = newHolds(s)
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if s.agents.creds == nil {
		return nil, errors.New("scheduler: WithTLS is required: agents accept dispatches only over mutual TLS")
	}
	return s, nil
}

// Run wakes waiters when instances are freed and collects expired leases
// until ctx is done. It closes the agent connections when it returns.
func (s *Scheduler) Run(ctx context.Context) error {
	defer s.agents.close()
	defer s.ReleaseHeld()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		sub := s.pool.SubscribeFreed(ctx, s.pool.SubPoolsChannel(), s.pool.WantedChannel())
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return nil
			case msg, ok := <-ch:
				if !ok {
					return nil
				}
				class, tenant, _ := strings.Cut(msg.Payload, " ")
				switch msg.Channel {
				case s.pool.SubPoolsChannel():
					s.subpools.invalidate()
				case s.pool.WantedChannel(): // a waiter, here or on another emberd
					go s.holds.want(class, tenant, s.ticketLease()) // releases: off this loop
				default:
					s.queues.freed(class, tenant)
				}
			}
		}
	})
	g.Go(func() error {
		t := time.NewTicker(s.cfg.ReapEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case now := <-t.C:
				if n, err := s.pool.ExpireLeases(ctx, now); err != nil && ctx.Err() == nil {
					s.log.Warn().Err(err).Msg("expire leases")
				} else if n > 0 {
					s.log.Warn().Int("instances", n).Msg("returned instances whose claim lease expired")
				}
			}
		}
	})
	return g.Wait()
}

// Invoke runs inv and returns the function's result. A non-nil error means
// Ember failed (nothing is known to have run, or the outcome is unknown).
func (s *Scheduler) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	called := time.Now()
	if inv.ID == "" {
		inv.ID = invoke.NewID()
	}
	v, err := s.resolver.Resolve(ctx, inv.Tenant, inv.Function, inv.Qualifier)
	if err != nil {
		return invoke.Result{}, fmt.Errorf("invocation %s: %w", inv.ID, err)
	}
	choice, err := s.choose(ctx, v)
	if err != nil {
		return invoke.Result{}, fmt.Errorf("invocation %s: %w", inv.ID, err)
	}
	class := choice.Class
	vk := pool.VersionKey(v.Tenant, v.Function, v.Version)
	logSvc, err := s.logService(ctx, inv, v)
	if err != nil {
		return invoke.Result{}, fmt.Errorf("invocation %s: %w", inv.ID, err)
	}
	queueDeadline := time.Now().Add(s.cfg.MaxQueueWait)
	if !inv.Deadline.IsZero() && inv.Deadline.Before(queueDeadline) {
		queueDeadline = inv.Deadline
	}
	var lastErr error
	// Instances that answered Aborted stay claimed by this invocation until
	// it is done, so its retries do not pick them again; then they go back.
	var held []pool.Claim
	defer func() {
		for _, c := range held {
			s.release(ctx, c, "", true)
		}
	}()
	for attempt := 0; attempt < s.cfg.DispatchAttempts; attempt++ {
		claimStart := time.Now()
		// The key's previous invocation may have left its claim: no Redis
		// (its lease must cover this invocation and more).
		c, fromHold := pool.Claim{}, false
		if attempt == 0 && s.cfg.HoldIdle > 0 {
			// The lease must outlast the dispatch's deadline (the timeout
			// plus its slack) by half the grace.
			need := time.Now().Add(v.Timeout + dispatchSlack + s.cfg.LeaseGrace/2)
			c, fromHold = s.holds.take(inv.HoldKey, holdMatch{vk, logSvc.GetId(), class, v.Tenant}, need)
		}
		cold, poolName := false, "held"
		if !fromHold {
			want := pool.Want{Tenant: v.Tenant, Class: class, VersionKey: vk, LogService: logSvc.GetId(),
				Function: v.Tenant + "/" + v.Function, Config: v.Version + "#" + v.ConfigHash, MemoryMB: v.MemoryMB}
			var err error
			c, cold, err = s.claim(ctx, want, choice.SubPool, queueDeadline, v.Timeout)
			if err != nil {
				return invoke.Result{}, fmt.Errorf("invocation %s: %w", inv.ID, err)
			}
			poolName = string(c.Kind)
		}
		claimed := time.Now()
		s.m.claimWait.WithLabelValues(poolName).Observe(claimed.Sub(claimStart).Seconds())
		res, call, retry, err := s.dispatch(ctx, inv, v, c, vk, logSvc, &held, class, nil)
		if err == nil && call != nil {
			// The function waits for another's result: run the call, then
			// resume it on its instance (calls.go). Instances held by
			// earlier attempts go back first.
			for _, h := range held {
				s.release(ctx, h, "", true)
			}
			held = nil
			res, err = s.serveCalls(ctx, inv, v, c, vk, logSvc, class, call)
			if err != nil {
				s.m.platformErrors.Inc()
				return invoke.Result{}, fmt.Errorf("invocation %s: %w", inv.ID, err)
			}
		}
		if err == nil {
			res.Timing.Claim = claimed.Sub(called)
			res.Version = v.Version
			switch {
			case res.Start == invoke.StartHot:
			case cold:
				res.Start = invoke.StartCold
			default:
				res.Start = invoke.StartPoolHit
			}
			s.m.invocations.WithLabelValues(res.Status.String(), res.Start.String()).Inc()
			s.m.observeStages(res)
			return res, nil
		}
		lastErr = err
		if !retry || ctx.Err() != nil {
			break
		}
		s.log.Warn().Err(err).Str("invocation", inv.ID).Str("instance", c.InstanceID).Msg("instance lost before running; trying another")
	}
	s.m.platformErrors.Inc()
	return invoke.Result{}, fmt.Errorf("invocation %s: %w", inv.ID, lastErr)
}

// claim takes an instance, waiting for one up to deadline, in FIFO order
// with the other invocations of the tenant waiting for the class, on this
// emberd and on every other (a ticket in Redis: only the oldest waiter may
// claim). cold
// reports that none was free at first and the instance came from the
// warming pool afterwards: it was most likely started on demand for this
// invocation. For a sub-pool (sp set) the placement chooses the agent that
// starts a new instance, and a sub-pool no host can hold fails at once;
// for a fixed class every agent is asked.
func (s *Scheduler) claim(ctx context.Context, want pool.Want, sp *pool.SubPool, deadline time.Time, timeout time.Duration) (pool.Claim, bool, error) {
	tenant, class := want.Tenant, want.Class
	lease := func() time.Time { return time.Now().Add(timeout + s.cfg.LeaseGrace) }
	w, first := s.queues.join(class, tenant)
	// claimed: this waiter took an instance; woken: it holds a wake it did
	// not use yet. Either way the next waiter should try when it leaves.
	claimed, woken := false, false
	defer func() { s.queues.leave(w, claimed || woken) }()
	if first { // nobody waiting ahead: try at once (the hot path)
		c, ok, err := s.tryClaim(ctx, want, lease(), w)
		if err != nil || ok {
			claimed = ok
			return c, false, err
		}
	}
	if n := s.waiting.Add(1); n > int64(s.cfg.MaxWaiting) {
		s.waiting.Add(-1)
		return pool.Claim{}, false, fmt.Errorf("%w: %d invocations already waiting for class %s", ErrResourceExhausted, n-1, class)
	}
	defer s.waiting.Add(-1)
	gauge := s.m.waiting.WithLabelValues(class)
	gauge.Inc()
	defer gauge.Dec()
	waitStart := time.Now()
	defer func() {
		waited := time.Since(waitStart)
		s.m.waited.WithLabelValues(class).Observe(waited.Seconds())
		s.waits.add(class, waited)
	}()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	// The head of a queue repeats its demand (and its claim) every
	// DemandEvery: a safety net for a lost wake-up or demand message.
	demand := time.NewTicker(s.cfg.DemandEvery)
	defer demand.Stop()
	var agent string
	if sp != nil {
		var err error
		if agent, err = s.host(ctx, sp); err != nil {
			return pool.Claim{}, false, err
		}
	}
	// A place in the tenant's queue shared by every emberd: the order of
	// the waiters of all replicas, leased (renewed every DemandEvery) so
	// that an emberd that dies cannot hold the queue. Left when not served
	// by a claim, whatever happened to the Enqueue.
	ticket, ticketLease := strconv.FormatUint(rand.Uint64(), 36), s.ticketLease()
	defer func() {
		if !claimed {
			dctx, cancel := detached(ctx)
			defer cancel()
			if err := s.pool.Dequeue(dctx, class, tenant, ticket); err != nil {
				s.log.Warn().Err(err).Msg("leave the wait queue (the ticket goes when its lease lapses)")
			}
		}
	}()
	ectx, cancel := detached(ctx)
	place, err := s.pool.Enqueue(ectx, class, tenant, ticket, ticketLease)
	cancel()
	if err != nil {
		return pool.Claim{}, false, err
	}
	want.Ticket = ticket
	s.queues.setTicket(w, place)
	renew := func() error {
		rctx, cancel := detached(ctx)
		defer cancel()
		return s.pool.Renew(rctx, class, tenant, ticket, place, ticketLease)
	}
	if err := s.pool.RequestInstance(ctx, class, agent); err != nil {
		return pool.Claim{}, false, err
	}
	// try claims with the ticket; one whose lease lapsed takes its place
	// back and tries again.
	try := func() (pool.Claim, bool, error) {
		c, ok, err := s.tryClaim(ctx, want, lease(), nil)
		if errors.Is(err, pool.ErrNoTicket) {
			if err := renew(); err != nil {
				return pool.Claim{}, false, err
			}
			c, ok, err = s.tryClaim(ctx, want, lease(), nil)
		}
		return c, ok, err
	}
	// One try now: a wake that came before this waiter had its place in
	// the local queue went to another.
	if c, ok, err := try(); err != nil {
		return pool.Claim{}, false, err
	} else if ok {
		claimed = true
		return c, c.Kind == pool.KindWarm, nil
	}
	for {
		select {
		case <-ctx.Done():
			return pool.Claim{}, false, ctx.Err()
		case <-timer.C:
			return pool.Claim{}, false, fmt.Errorf("%w (class %s)", ErrNoCapacity, class)
		case <-demand.C:
			if err := renew(); err != nil {
				return pool.Claim{}, false, err
			}
			if !s.queues.head(w) {
				continue
			}
			if sp != nil {
				agent, _ = s.host(ctx, sp)
			}
			if err := s.pool.RequestInstance(ctx, class, agent); err != nil {
				return pool.Claim{}, false, err
			}
		case <-w.ch:
			woken = true
		}
		// Back at the head before trying: an instance freed during the
		// attempt wakes it again instead of nobody.
		s.queues.rejoin(w)
		c, ok, err := try()
		if err != nil {
			return pool.Claim{}, false, err
		}
		woken = false // used: the attempt saw what the wake announced
		if ok {
			claimed = true
			return c, c.Kind == pool.KindWarm, nil
		}
	}
}

// ticketLease is how long a waiter's ticket lasts unrenewed.
func (s *Scheduler) ticketLease() time.Duration { return max(3*s.cfg.DemandEvery, 2*time.Second) }

// detached is ctx without its cancellation, bounded by claimTimeout: for a
// Redis call that must finish whatever happened to its caller.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
}

// tryClaim runs one claim script (two when the first found nothing and
// this scheduler gave back held instances of the class and tenant). The
// script runs on a context that the caller's cancellation cannot interrupt
// halfway: a claim made in Redis but never seen here would leave the
// instance busy until its lease expired. If the caller gave up meanwhile,
// the claim is released at once. A trying waiter w (else nil) waits from
// the moment the first script found nothing: from then on no claim of its
// class and tenant is held (dispatch), so none slips past the give-back.
func (s *Scheduler) tryClaim(ctx context.Context, want pool.Want, lease time.Time, w *waiter) (pool.Claim, bool, error) {
	if err := ctx.Err(); err != nil {
		return pool.Claim{}, false, err
	}
	cctx, cancel := detached(ctx)
	defer cancel()
	c, ok, err := s.pool.ClaimFor(cctx, want, lease)
	if err == nil && !ok {
		if w != nil {
			s.queues.waits(w)
		}
		if s.holds.releaseFor(want.Class, want.Tenant) > 0 {
			// Instances this scheduler held idle between a key's
			// invocations went back (other emberds give theirs back when
			// a waiter enqueues): one more try.
			c, ok, err = s.pool.ClaimFor(cctx, want, lease)
		}
	}
	if err != nil || !ok {
		return c, ok, err
	}
	if err := ctx.Err(); err != nil {
		if rerr := s.pool.Release(cctx, c, "", true); rerr != nil {
			s.log.Error().Err(rerr).Str("instance", c.InstanceID).Msg("release unused claim")
		}
		return pool.Claim{}, false, err
	}
	return c, true, nil
}

// release returns a claim to the pool (keep) or drops the instance. It uses
// a fresh context: the caller's may be cancelled, and a leaked claim would
// idle until its lease expires.
func (s *Scheduler) release(ctx context.Context, c pool.Claim, vk string, keep bool) {
	rctx, cancel := detached(ctx)
	defer cancel()
	if err := s.pool.Release(rctx, c, vk, keep); errors.Is(err, pool.ErrStaleClaim) {
		// Held past its lease: the instance went back to the pool and may
		// serve another claim now; this one must not free it again.
		s.log.Info().Err(err).Str("instance", c.InstanceID).Msg("claim released after its lease expired")
	} else if err != nil {
		s.log.Error().Err(err).Str("instance", c.InstanceID).Msg("release claim")
	}
}

// claimTimeout bounds one claim script round trip.
const claimTimeout = 2 * time.Second

// dispatchSlack is how long past an invocation's deadline its dispatch may
// take before the scheduler gives up on the agent.
const dispatchSlack = 10 * time.Second

// dispatch runs the invocation on the claimed instance and releases it.
// retry reports that the instance was lost before anything ran.
//
// With resume set it resumes the suspended invocation inv.ID on c's
// instance instead. A response STATUS_SUSPENDED returns the call the
// function waits for (the claim is released: the instance serves others
// meanwhile).
func (s *Scheduler) dispatch(ctx context.Context, inv *invoke.Invocation, v registry.Version, c pool.Claim, vk string,
	logSvc *dispatchpb.LogService, held *[]pool.Claim, class string, resume *dispatchpb.Resume) (res invoke.Result, call *dispatchpb.Call, retry bool, err error) {
	keep, hold := false, false
	defer func() {
		if hold {
			*held = append(*held, c)
			return
		}
		if call != nil {
			s.releaseSuspended(ctx, c, vk, call)
			return
		}
		t := time.Now()
		// Kept for the key's next invocation (holds.go) when the function
		// answered, unless an invocation of the tenant waits for an
		// instance of the class.
		answered := res.Status == invoke.StatusOK || res.Status == invoke.StatusFunctionError
		if !keep || !answered || inv.HoldKey == "" || s.cfg.HoldIdle <= 0 || s.queues.waitingFor(class, v.Tenant) ||
			!s.holds.put(inv.HoldKey, c, holdMatch{vk, logSvc.GetId(), class, v.Tenant}) {
			s.release(ctx, c, vk, keep)
		}
		res.Timing.Release = time.Since(t)
	}()
	client, err := s.agents.get(ctx, c.Agent)
	if err != nil {
		return invoke.Result{}, nil, true, err
	}
	deadline := time.Now().Add(v.Timeout)
	if !inv.Deadline.IsZero() && inv.Deadline.Before(deadline) {
		deadline = inv.Deadline
	}
	req := versionRequest(v, inv.ID, c.InstanceID)
	req.Payload = inv.Payload
	if resume != nil {
		req.Payload, req.Resume = nil, resume
	}
	req.DeadlineUnixMs = deadline.UnixMilli()
	req.TraceId = inv.TraceID
	req.FunctionArn = fmt.Sprintf("arn:aws:lambda:local:%s:function:%s:%s", v.Tenant, v.Function, v.Version)
	req.LogService = logSvc
	// The agent enforces the function's timeout; the RPC deadline only
	// guards against an agent that never answers.
	pctx := ctx
	if inv.RunToEnd {
		pctx = context.WithoutCancel(ctx)
	}
	rctx, cancel := context.WithDeadline(pctx, deadline.Add(dispatchSlack))
	defer cancel()
	start := time.Now()
	resp, err := client.Dispatch(rctx, req)
	rtt := time.Since(start)
	s.m.dispatch.Observe(rtt.Seconds())
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied:
			// The agent no longer has this instance for us: drop it, try another.
			return invoke.Result{}, nil, true, fmt.Errorf("agent %s instance %s: %w: %w", c.Agent, c.InstanceID, ErrUnavailable, err)
		case codes.Aborted:
			// The instance is fine but could not take this invocation now
			// (busy, code delivery hiccup): hold it while trying another.
			hold = true
			return invoke.Result{}, nil, true, fmt.Errorf("agent %s instance %s: %w: %w", c.Agent, c.InstanceID, ErrUnavailable, err)
		case codes.Unavailable:
			// The connection or the whole agent is down (agents never answer
			// Unavailable for one instance): reconnect on next use.
			s.agents.forget(c.Agent)
			return invoke.Result{}, nil, true, fmt.Errorf("agent %s: %w: %w", c.Agent, ErrUnavailable, err)
		}
		return invoke.Result{}, nil, false, fmt.Errorf("dispatch to agent %s: %w", c.Agent, err)
	}
	keep = true
	if resp.GetStatus() == dispatchpb.Status_STATUS_SUSPENDED {
		if resp.GetCall() == nil {
			return invoke.Result{}, nil, false, fmt.Errorf("agent %s: suspended invocation %s names no call", c.Agent, inv.ID)
		}
		return invoke.Result{}, resp.GetCall(), false, nil
	}
	res = resultFrom(inv.ID, c, resp)
	res.Timing = agentTiming(rtt, resp)
	return res, nil, false, nil
}

// agentTiming splits a dispatch's round trip rtt with the agent's timing
// (zero stages when the agent sent none).
func agentTiming(rtt time.Duration, r *dispatchpb.DispatchResponse) invoke.Timing {
	t := r.GetTiming()
	if t == nil {
		return invoke.Timing{}
	}
	agent, initRTT := time.Duration(t.GetAgentNs()), time.Duration(t.GetInitRoundTripNs())
	tm := invoke.Timing{Agent: agent, Dispatch: max(rtt-agent-initRTT, 0)}
	if hs, sent := r.GetHandlerStartUnixNs(), t.GetInvokeSentUnixNs(); hs > 0 && sent > 0 && hs >= sent {
		// ember-init's share of its round trip, split at the handler's
		// start (bounded by it: a step of the wall clock between the two
		// readings cannot make a stage larger).
		initShare := max(initRTT-time.Duration(r.GetDurationNs()), 0)
		tm.ToHandler = min(time.Duration(hs-sent), initShare)
		tm.FromHandler = initShare - tm.ToHandler
	}
	return tm
}

// versionRequest is the part of a dispatch that says what runs: version v
// on instance, for invocation id.
func versionRequest(v registry.Version, id, instance string) *dispatchpb.DispatchRequest {
	req := &dispatchpb.DispatchRequest{
		InvocationId: id, InstanceId: instance, Tenant: v.Tenant, Function: v.Function, Version: v.Version,
		CodeDigest: v.CodeDigest, Handler: v.Handler, MemoryMb: v.MemoryMB, TimeoutMs: v.Timeout.Milliseconds(),
		Env: v.Env, Network: v.Network,
	}
	for _, m := range v.State {
		req.State = append(req.State, &dispatchpb.StateMount{Name: m.Name, Path: m.Path, SizeMb: m.SizeMB})
	}
	return req
}

func resultFrom(id string, c pool.Claim, r *dispatchpb.DispatchResponse) invoke.Result {
	res := invoke.Result{
		InvocationID:      id,
		Payload:           r.GetPayload(),
		ErrorType:         r.GetErrorType(),
		LogTail:           r.GetLogTail(),
		LogTruncatedBytes: r.GetLogTruncatedBytes(),
		Agent:             c.Agent,
		Instance:          c.InstanceID,
		Duration:          time.Duration(r.GetDurationNs()),
		InitDuration:      time.Duration(r.GetInitDurationNs()),
		PreloadTag:        r.GetPreloadTag(),
	}
	if ns := r.GetHandlerStartUnixNs(); ns > 0 {
		res.HandlerStart = time.Unix(0, ns)
	}
	switch r.GetStatus() {
	case dispatchpb.Status_STATUS_OK:
		res.Status = invoke.StatusOK
	case dispatchpb.Status_STATUS_TIMEOUT:
		res.Status = invoke.StatusTimeout
	case dispatchpb.Status_STATUS_CRASHED:
		res.Status = invoke.StatusCrashed
	default:
		res.Status = invoke.StatusFunctionError
	}
	if r.GetStart() == dispatchpb.StartKind_START_KIND_HOT {
		res.Start = invoke.StartHot
	}
	if u := r.GetUsage(); u != nil {
		res.Usage = &invoke.Usage{
			CPU: time.Duration(u.GetCpuNs()), Wall: time.Duration(u.GetWallNs()),
			MemoryPeakBytes: u.GetMemoryPeakBytes(), MemorySizeMB: u.GetMemorySizeMb(),
			RxBytes: u.GetRxBytes(), TxBytes: u.GetTxBytes(), RxPackets: u.GetRxPackets(), TxPackets: u.GetTxPackets(),
			NetworkMeasured: u.GetNetworkMeasured(), Source: u.GetSource(),
		}
	}
	return res
}

// dispatchStatus is resultFrom's mapping the other way.
func dispatchStatus(st invoke.Status) dispatchpb.Status {
	switch st {
	case invoke.StatusOK:
		return dispatchpb.Status_STATUS_OK
	case invoke.StatusTimeout:
		return dispatchpb.Status_STATUS_TIMEOUT
	case invoke.StatusCrashed:
		return dispatchpb.Status_STATUS_CRASHED
	}
	return dispatchpb.Status_STATUS_FUNCTION_ERROR
}

// ReleaseHeld gives back every claim kept between a key's invocations
// (holds.go); claims of invocations that end afterwards are released at
// once. A stopping emberd calls it once its consumers have stopped; Run's
// end does too.
func (s *Scheduler) ReleaseHeld() { s.holds.close() }

// Waiting reports how many invocations are waiting for an instance.
func (s *Scheduler) Waiting() int { return int(s.waiting.Load()) }

// WaitingFor reports how many invocations wait for an instance of class
// (a fixed class or a sub-pool's); those still trying their first claim
// do not count.
func (s *Scheduler) WaitingFor(class string) int { return s.queues.waiting(class) }
