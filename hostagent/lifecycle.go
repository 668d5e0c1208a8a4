package hostagent

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/sandbox"
	"github.com/ember-run/ember/internal/sysmon"
)

// bootAsync boots a reserved instance and reports whether it is ready. It
// releases the reservation's a.starts slot.
func (a *Agent) bootAsync(in *instance) bool {
	defer a.starts.Done()
	log := a.log.With().Str("instance", in.id).Str("class", in.class).Logger()
	select {
	case a.sem <- struct{}{}:
	case <-a.bg.Done():
		a.discard(in)
		return false
	}
	if in.subpool != nil { // its booking must outlive the boot that starts now
		deadline := time.Now().Add(a.cfg.InstanceStartTimeout + 5*time.Second)
		if ok, err := a.store.ExtendSubPoolBooking(a.bg, in.class, in.id, deadline.UnixMilli()); err != nil || !ok {
			<-a.sem
			log.Warn().Err(err).Msg("the sub-pool booking lapsed before the instance could start")
			a.discard(in)
			return false
		}
	}
	start := time.Now()
	steps, err := a.boot(in)
	<-a.sem
	if err != nil {
		if a.bg.Err() == nil {
			log.Error().Err(err).Msg("instance start failed")
		}
		a.discard(in)
		return false
	}
	log.Info().Dur("took", time.Since(start)).Dur("prepare", steps.prepare).Dur("create", steps.create).Dur("answer", steps.answer).
		Dur("netns", steps.spare).Dur("netns_early", steps.early).Bool("defined_ahead", in.definedAhead).
		Msg("instance ready in the warming pool")
	return true
}

// bootSteps is how long a boot's steps took: its directories and files,
// the sandbox made and ember-init started (containerd, runc), ember-init's
// Hello, the network namespace set aside for its first container (waited
// for after the Hello) and, when ember-init adopted the one the agent made
// while the instance started, how long that took (0 otherwise).
type bootSteps struct{ prepare, create, answer, spare, early time.Duration }

// boot creates the instance, waits for ember-init's Hello and adds the
// instance to the warming pool.
func (a *Agent) boot(in *instance) (steps bootSteps, err error) {
	ctx, cancel := context.WithTimeout(a.bg, a.cfg.InstanceStartTimeout)
	defer cancel()
	t := time.Now()
	for _, d := range []string{in.sockDir(), in.codeDir(), filepath.Dir(in.logPath())} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return steps, fmt.Errorf("instance dir: %w", err)
		}
	}
	// ember-init, root in its user namespace, creates its socket here.
	if err := os.Chown(in.sockDir(), in.hostUID, in.hostUID); err != nil {
		return steps, fmt.Errorf("instance socket dir: %w", err)
	}
	if err := os.Chmod(in.sockDir(), 0o700); err != nil {
		return steps, fmt.Errorf("instance socket dir: %w", err)
	}
	spec := a.instanceSpec(in)
	if spec.StateDir != "" {
		if err := a.deps.State.Prepare(spec.StateDir); err != nil {
			return steps, err
		}
	}
	if spec.ResolvConf != "" {
		if err := os.WriteFile(spec.ResolvConf, []byte(a.resolvConf()), 0o644); err != nil {
			return steps, fmt.Errorf("instance resolv.conf: %w", err)
		}
	}
	// The first container's network namespace is made and connected while
	// the instance starts; prepareSpare adopts it (or drops it).
	var early *earlySpare
	defer func() {
		if early != nil && err != nil {
			early.drop(a, nil)
		}
	}()
	steps.prepare = time.Since(t)
	t = time.Now()
	sb, err := a.deps.Runtime.Create(ctx, spec, func(pid uint32) { early = a.startEarlySpare(ctx, in, pid) })
	steps.create = time.Since(t)
	if err != nil {
		return steps, fmt.Errorf("create: %w", err)
	}
	client, err := dialInit(ctx, filepath.Join(in.sockDir(), initproto.SocketName), in.id, true, a.initEvents(in))
	steps.answer = time.Since(t) - steps.create
	if err != nil {
		return steps, err
	}
	if spec.BootMilliCPU > 0 { // booted: its own quota before anything is claimed
		if err := a.deps.Cgroups.SetInstanceCPUQuota(sb.CgroupPath, a.instanceQuotaUs(in)); err != nil {
			client.close()
			return steps, fmt.Errorf("put back the instance's CPU quota after its boot: %w", err)
		}
	}
	if err := setSysmonSlack(int(sb.Pid), sysmon.Slack); err != nil { // its runtime runs: it answered
		a.log.Debug().Err(err).Str("instance", in.id).Msg("ember-init's sysmon keeps its timer slack")
	}
	a.mu.Lock()
	if a.closing {
		a.mu.Unlock()
		client.close()
		return steps, fmt.Errorf("agent shutting down")
	}
	in.client = client
	in.cgroupPath = sb.CgroupPath
	in.state = stReady
	in.lastUsed = time.Now()
	a.watchers.Add(1)
	a.mu.Unlock()
	go a.watch(in, client)
	t = time.Now()
	a.prepareSpare(in, client, early) // before any claim: off the invocations' path
	steps.spare = time.Since(t)
	if early != nil {
		if early.adopted {
			steps.early = early.took
		}
		early = nil // adopted or dropped
	}
	if err := a.store.AddWarm(ctx, in.id, a.cfg.AgentID, in.class); err != nil {
		a.mu.Lock()
		in.state = stGone
		a.mu.Unlock()
		client.close()
		return steps, err
	}
	return steps, nil
}

// instanceSpec is what in boots as: its sandbox (the files it names are
// made by boot). A boot and a definition ahead of it (ahead.go) make the
// same.
func (a *Agent) instanceSpec(in *instance) sandbox.InstanceSpec {
	spec := sandbox.InstanceSpec{
		ID: in.id, Class: in.class, MemoryMB: in.memoryMB,
		CPUShares: a.cfg.cpuShares(in.memoryMB), PidsLimit: a.cfg.InstancePidsLimit,
		SocketDir: in.sockDir(), CodeDir: in.codeDir(), LogPath: in.logPath(), LogDir: in.fnLogDir(),
		HostUID: uint32(in.hostUID), OrphanTimeout: a.cfg.OrphanTimeout,
	}
	if sp := in.subpool; sp != nil { // the sub-pool's constraints
		spec.MilliCPU, spec.PidsLimit, spec.TmpMB = sp.MilliCPU, sp.PidsLimit, sp.TmpMB
	} else if boot := a.boostedInstanceVCPU(); sandbox.QuotaUs(boot) > a.instanceQuotaUs(in) {
		// Booting is a start too (runc's set-up in the instance, its seccomp
		// filter compiled there, ember-init's runtime): boosted until
		// ember-init answers. Only trusted code runs in it until then.
		spec.BootMilliCPU = int64(math.Round(boot * 1000))
	}
	if a.deps.State != nil {
		spec.StateDir = in.stateDir()
	}
	if a.resolvConf() != "" {
		spec.ResolvConf = filepath.Join(in.dir, "resolv.conf")
	}
	return spec
}

// resolvConf is the resolv.conf instances get: Config.Network.DNS, or ""
// when there are none or containers have no network.
func (a *Agent) resolvConf() string {
	if a.cfg.NoNetwork || len(a.cfg.Network.DNS) == 0 {
		return ""
	}
	var b strings.Builder
	for _, d := range a.cfg.Network.DNS {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	b.WriteString("options timeout:2 attempts:2\n")
	return b.String()
}

// initEvents are what the agent does on in's ember-init's events.
func (a *Agent) initEvents(in *instance) initEvents {
	return initEvents{
		exited: func(ev initproto.Exited) {
			// ember-init respawns the process on the next Invoke.
			a.log.Info().Str("instance", in.id).Str("container", ev.ContainerID).
				Int("exit_code", ev.ExitCode).Str("signal", ev.Signal).Msg("container process exited")
			a.endBoost(in, ev.ContainerID)
		},
		ready: func(ev initproto.Ready) { a.endBoost(in, ev.ContainerID) },
	}
}

// discard drops a reserved or failed instance: destroys whatever was
// created and forgets it.
func (a *Agent) discard(in *instance) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.mu.Lock()
	in.state = stGone
	spare := in.spare
	in.spare = nil
	a.mu.Unlock()
	if in.subpool != nil { // give the booking back at once
		if err := a.store.ReleaseSubPoolSlot(ctx, in.class, in.id); err != nil {
			a.log.Warn().Err(err).Str("instance", in.id).Msg("release sub-pool booking")
		}
	}
	if err := a.deps.Runtime.Destroy(ctx, in.id); err != nil {
		a.log.Error().Err(err).Str("instance", in.id).Msg("destroy failed instance")
	}
	a.dropSpare(spare, nil) // ember-init went with the instance
	a.removeDir(in)
	a.mu.Lock()
	delete(a.insts, in.id)
	a.mu.Unlock()
}

// watch waits for the instance's init connection to end. An end that the
// agent did not cause means the instance is lost.
func (a *Agent) watch(in *instance, client *initClient) {
	defer a.watchers.Done()
	<-client.Dead()
	a.mu.Lock()
	gone := in.state == stGone
	a.mu.Unlock()
	if !gone {
		a.breakInstance(in, "ember-init connection lost")
	}
}

// breakInstance force-retires a lost instance, destroys it and starts a
// replacement.
func (a *Agent) breakInstance(in *instance, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.log.Warn().Str("instance", in.id).Str("class", in.class).Str("tenant", in.tenant).Str("reason", reason).Msg("instance broken; replacing it")
	a.destroy(ctx, in, reason)
	a.kickRefill()
}

// destroy retires the instance in Redis (forcibly), closes its init
// connection, destroys it and removes its cgroups and directory. It is
// idempotent.
func (a *Agent) destroy(ctx context.Context, in *instance, reason string) {
	a.mu.Lock()
	if _, ok := a.insts[in.id]; !ok {
		a.mu.Unlock()
		return
	}
	delete(a.insts, in.id)
	in.state = stGone
	client := in.client
	var cgs []CgroupChild
	var meters []Meter
	var attached []*container
	for _, c := range in.containers {
		cgs = append(cgs, c.cg)
		meters = append(meters, c.meter)
		attached = append(attached, c)
	}
	clear(in.containers)
	relay := in.relay
	in.relay = nil
	spare := in.spare
	in.spare = nil
	a.mu.Unlock()
	if _, err := a.store.Retire(ctx, in.id, true); err != nil {
		a.log.Error().Err(err).Str("instance", in.id).Msg("retire in redis")
	}
	if client != nil {
		client.close()
	}
	a.dropBoosts(in)
	if err := a.deps.Runtime.Destroy(ctx, in.id); err != nil {
		a.log.Error().Err(err).Str("instance", in.id).Msg("destroy instance")
	}
	if relay != nil { // after ember-init's last flush
		relay.Close()
	}
	for _, c := range attached {
		a.detachNetwork(ctx, c)
	}
	a.dropSpare(spare, nil) // ember-init went with the instance
	for _, m := range meters {
		closeMeter(a.log, m)
	}
	for _, cg := range cgs {
		if err := cg.Remove(); err != nil {
			a.log.Warn().Err(err).Str("instance", in.id).Msg("remove container cgroup")
		}
	}
	a.removeDir(in)
	a.log.Info().Str("instance", in.id).Str("class", in.class).Str("reason", reason).Msg("instance destroyed")
}

// removeDir detaches the instance's state resources, then removes its
// directory; it keeps the directory if a resource may still be attached
// (removing it would delete the tenant's data).
func (a *Agent) removeDir(in *instance) {
	if a.deps.State != nil {
		if err := a.deps.State.Release(in.stateDir()); err != nil {
			a.log.Error().Err(err).Str("instance", in.id).Msg("detach state resources; keeping the instance directory")
			return
		}
	}
	if err := os.RemoveAll(in.dir); err != nil {
		a.log.Warn().Err(err).Str("instance", in.id).Msg("remove instance dir")
	}
}

// reclaim stops idle containers, retires idle instances and those Redis
// lost, and retires warming instances beyond the pool target (started on
// demand) once they have idled past InstanceKeepAlive.
func (a *Agent) reclaim(ctx context.Context) {
	now := time.Now()
	// Instances Redis no longer lists (a scheduler dropped one after a
	// failed dispatch) can never be claimed again: after two passes in a
	// row (not one: AddWarm follows the ready state by a moment) they are
	// destroyed, and the warming pool refills.
	var known map[string]bool
	if insts, err := a.store.Instances(ctx, a.cfg.AgentID); err == nil {
		known = make(map[string]bool, len(insts))
		for _, in := range insts {
			known[in.ID] = true
		}
	}
	a.mu.Lock()
	var cands []*instance
	warm := a.warmLocked()
	deleted := map[string]bool{} // instances whose sub-pool is gone or changed
	for _, in := range a.insts {
		if in.subpool != nil {
			if now, ok := a.subpools[in.subpool.Name]; !ok || now != *in.subpool {
				deleted[in.id] = true
			}
		}
		if in.state == stReady && in.running == 0 {
			cands = append(cands, in)
		}
	}
	a.mu.Unlock()
	for _, in := range cands {
		if !in.op.TryLock() {
			continue // a dispatch is on it
		}
		a.mu.Lock()
		if known != nil && !known[in.id] && !in.busyLocked() {
			in.missing++
			in.lost = in.lost || in.missing >= 2
		} else if known != nil {
			in.missing = 0
		}
		busy, tenant, lost, idleSince, state := in.busyLocked(), in.tenant, in.lost, in.lastUsed, in.state
		idle := idleContainers(in.containers, now.Add(-a.cfg.ContainerKeepAlive))
		a.mu.Unlock()
		if busy || state != stReady {
			in.op.Unlock()
			continue
		}
		switch {
		case lost:
			a.destroy(ctx, in, "lost from redis")
		case deleted[in.id]:
			if gone, err := a.store.Retire(ctx, in.id, false); err != nil {
				a.log.Warn().Err(err).Str("instance", in.id).Msg("retire instance of a deleted sub-pool")
			} else if gone {
				a.destroy(ctx, in, "its sub-pool was deleted or changed")
			}
		case tenant != "" && now.Sub(idleSince) > a.cfg.InstanceKeepAlive,
			// A sub-pool's warm count is kept across hosts (ensureSubPools).
			in.subpool == nil && tenant == "" && warm[in.class] > a.cfg.Pool[in.class] && now.Sub(idleSince) > a.cfg.InstanceKeepAlive:
			gone, err := a.store.Retire(ctx, in.id, false)
			if err != nil {
				a.log.Warn().Err(err).Str("instance", in.id).Msg("retire idle instance")
			} else if gone {
				if tenant == "" {
					warm[in.class]--
				}
				a.destroy(ctx, in, "idle past the instance keep-alive")
			}
		default:
			for _, c := range idle {
				a.stopContainer(ctx, in, c, true, "idle past the container keep-alive")
			}
		}
		in.op.Unlock()
	}
}

// stopAside stops cs, which the caller took out of in.containers (so no
// dispatch uses them), in the background: the dispatch in flight does not
// wait for their processes to exit (up to StopGrace each). Their memory is
// freed as soon as they do. Waited for at shutdown, like instance boots,
// and not cut short by it (a container left half stopped would keep its
// network address).
func (a *Agent) stopAside(in *instance, cs []*container, dropHot bool, reason string) {
	if len(cs) == 0 {
		return
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(a.bg), a.cfg.StopGrace+30*time.Second)
		defer cancel()
		for _, c := range cs {
			a.stopContainer(ctx, in, c, dropHot, reason)
		}
	}
	a.mu.Lock()
	closing := a.closing
	if !closing {
		a.starts.Add(1)
	}
	a.mu.Unlock()
	if closing { // shutdown waits for no more goroutines: stop them here
		stop()
		return
	}
	go func() {
		defer a.starts.Done()
		stop()
	}()
}

// retireContainer takes c out of in.containers and stops it in the
// background, or, while an invocation runs in it, marks it to be stopped
// when the last one ends (releaseContainer).
func (a *Agent) retireContainer(in *instance, c *container, dropHot bool, reason string) {
	a.mu.Lock()
	if in.containers[c.key] == c {
		delete(in.containers, c.key)
	}
	if c.inUse > 0 {
		c.retire, c.retireHot = reason, dropHot
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	a.stopAside(in, []*container{c}, dropHot, reason)
}

// releaseContainer ends one invocation's use of c; a container retired
// meanwhile is stopped once unused.
func (a *Agent) releaseContainer(in *instance, c *container) {
	a.mu.Lock()
	c.inUse--
	c.lastUsed = time.Now()
	reason, hot := c.retire, c.retireHot
	stop := c.inUse == 0 && reason != ""
	if stop {
		c.retire = ""
	}
	a.mu.Unlock()
	if stop {
		a.stopAside(in, []*container{c}, hot, reason+" (after its invocation ended)")
	}
}

// stopContainer stops one container and forgets it: first in Redis (unless
// another container keeps its version hot), then in ember-init, then its
// cgroup. Caller holds in.op, took c out of in.containers itself, or runs
// the container's only invocation.
func (a *Agent) stopContainer(ctx context.Context, in *instance, c *container, dropHot bool, reason string) {
	a.mu.Lock()
	if in.containers[c.key] == c { // a newer container may have its key now
		delete(in.containers, c.key)
	}
	client := in.client
	done := c.stopped
	c.stopped, c.retire = true, "" // once: a retirement pending on it is this stop
	a.mu.Unlock()
	if done {
		return
	}
	log := a.log.With().Str("instance", in.id).Str("container", c.id).Str("version", c.versionKey).Logger()
	if dropHot {
		if err := a.store.DropHot(ctx, in.id, c.versionKey); err != nil {
			log.Warn().Err(err).Msg("drop hot version")
		}
	}
	if err := client.stop(ctx, c.id, a.cfg.StopGrace); err != nil {
		log.Warn().Err(err).Msg("stop container")
	}
	a.endBoost(in, c.id) // stopped before its runtime was ready: no Exited comes
	a.detachNetwork(ctx, c)
	closeMeter(log, c.meter)
	if err := c.cg.Remove(); err != nil {
		log.Warn().Err(err).Msg("remove container cgroup")
	}
	log.Info().Str("reason", reason).Msg("container stopped")
}
