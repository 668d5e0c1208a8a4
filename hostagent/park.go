package hostagent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/hostagent/initproto"
)

// An invocation whose function calls another through the Invoke API that
// ember-init serves (initproto.TypeCall) is parked while the call runs:
// the dispatch answers STATUS_SUSPENDED with the call, the container's
// cgroup is frozen (no CPU; its memory stays, and its reservation counts
// against the instance until a checkpoint gives it back, checkpoint.go),
// and when the instance has room the claim goes back to the scheduler, so
// other invocations run on the instance meanwhile. A
// dispatch with resume thaws it, hands the call's result to the waiting
// function and waits for the invocation's Result as before. ember-init
// keeps the invocation's deadline all along: one whose resume comes too
// late ends as a timeout, and a parked invocation nobody resumes is
// dropped after its deadline.

// parked is a suspended invocation on its instance.
type parked struct {
	run    *invokeRun
	callID uint64 // the call's, for its result
	// mb is its container's memory reservation, counted on the instance
	// until it resumes or is checkpointed (guarded by Agent.mu).
	mb    int64
	timer *time.Timer
	at    time.Time // when it was parked
	// checkpoint: with Config.CRIU, its timer checkpoints the process.
	checkpoint *time.Timer

	// mu serialises the checkpoint with the resume or the drop.
	mu   sync.Mutex
	gone bool          // resumed or dropped: no checkpoint any more
	cp   *checkpointed // the process is on disk, not running
}

// parkSlack is how long past its deadline (and ember-init's time to end
// it) a parked invocation waits for a resume before it is dropped.
const parkSlack = 10 * time.Second

// park suspends run for call cf: see the comment at the top. The parked
// container keeps its whole memory reservation (it may grow to its limit
// once thawed); room says whether the instance has memory left for
// another invocation (else the scheduler keeps the claim).
func (a *Agent) park(log zerolog.Logger, r *invokeRun, cf *callFrame) (*dispatchpb.DispatchResponse, error) {
	var usedMB int64
	if used, err := r.c.cg.MemoryUsage(); err == nil {
		usedMB = (used + 1<<20 - 1) >> 20
	}
	t0 := time.Now()
	if err := r.c.cg.Freeze(true); err != nil {
		log.Warn().Err(err).Msg("freeze a parked container (it stays parked, not frozen)")
	}
	freeze := time.Since(t0)
	id := r.req.GetInvocationId()
	mb := dispatchMB(r.in, r.req)
	p := &parked{run: r, callID: cf.call.CallID, mb: mb, at: time.Now()}
	wait := time.Until(time.UnixMilli(r.deadline)) + a.cfg.StopGrace + initReplySlack + parkSlack
	a.mu.Lock()
	r.c.inUse++ // the resume's end releases it
	r.in.parkedMB += mb
	r.in.parked[id] = p
	// This dispatch's own memory is counted as running until it returns.
	room := r.in.memoryMB-(r.in.runningMB-mb)-r.in.parkedMB >= minFunctionMB
	p.timer = time.AfterFunc(wait, func() { a.dropParked(r.in, id, "no resume came by its deadline") })
	if a.cfg.CRIU != "" {
		p.checkpoint = time.AfterFunc(a.cfg.CheckpointAfter, func() { a.checkpointParked(r.in, id) })
	}
	a.mu.Unlock()
	log.Info().Str("call", cf.call.Function).Int64("parked_mb", mb).Int64("used_mb", usedMB).Bool("room", room).
		Int64("freeze_us", freeze.Microseconds()).Msg("invocation parked: its function waits for a call")
	return &dispatchpb.DispatchResponse{
		Status: dispatchpb.Status_STATUS_SUSPENDED, Start: r.kind,
		Call: &dispatchpb.Call{Function: cf.call.Function, Qualifier: cf.call.Qualifier, Payload: cf.payload,
			DeadlineUnixMs: r.deadline, Room: room},
	}, nil
}

// minFunctionMB is the least memory a function has (the smallest class).
var minFunctionMB = pool.StandardClasses[0]

// unpark takes invocation id's parked record off in (nil if none).
func (a *Agent) unpark(in *instance, id string) *parked {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := in.parked[id]
	if p == nil {
		return nil
	}
	delete(in.parked, id)
	p.timer.Stop()
	if p.checkpoint != nil {
		p.checkpoint.Stop()
	}
	in.parkedMB -= p.mb
	return p
}

// checkpointParked checkpoints parked invocation id's process (thawed for
// CRIU): the instance gets its memory back. A failure leaves it frozen.
func (a *Agent) checkpointParked(in *instance, id string) {
	a.mu.Lock()
	p := in.parked[id]
	a.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return
	}
	r := p.run
	log := a.log.With().Str("instance", in.id).Str("invocation", id).Logger()
	_ = r.c.cg.Freeze(false)
	ctx, cancel := context.WithTimeout(context.Background(), checkpointTimeout)
	defer cancel()
	t0 := time.Now()
	cp, err := a.dump(ctx, r.c, filepath.Join(in.dir, "checkpoints", id), in.hostUID)
	if errors.Is(err, errProcessLost) {
		// Its shim was ended: ember-init ends the invocation as a crash. The
		// container goes (CRIU's network lock stays in its namespace).
		log.Error().Err(err).Msg("checkpoint of a parked invocation lost its process")
		a.retireContainer(in, r.c, true, "its checkpoint failed")
		return
	}
	if err != nil {
		log.Warn().Err(err).Msg("checkpoint of a parked invocation failed; it stays frozen")
		_ = r.c.cg.Freeze(true)
		return
	}
	p.cp = cp
	a.mu.Lock()
	if in.parked[id] == p { // else a resume or drop took it (and its memory) off already
		in.parkedMB -= p.mb
	}
	p.mb = 0
	a.mu.Unlock()
	log.Info().Int64("dump_us", time.Since(t0).Microseconds()).Int64("image_mb", cp.sizeMB).
		Msg("invocation checkpointed: its process is on disk until the resume")
}

// checkpointTimeout bounds a CRIU dump or restore.
const checkpointTimeout = 30 * time.Second

// dropParked forgets a parked invocation that will not be resumed: its
// container is thawed (ember-init ends the invocation at its deadline).
func (a *Agent) dropParked(in *instance, id, why string) {
	p := a.unpark(in, id)
	if p == nil {
		return
	}
	a.log.Info().Str("instance", in.id).Str("invocation", id).Str("why", why).Msg("parked invocation dropped")
	p.mu.Lock()
	p.gone = true
	cp := p.cp
	p.mu.Unlock()
	if cp != nil { // ember-init ended the invocation; its process is on disk
		_ = os.RemoveAll(cp.dir)
		cp.release()
		a.retireContainer(in, p.run.c, true, "its checkpointed invocation was dropped")
	}
	_ = p.run.c.cg.Freeze(false)
	p.run.pending.done()
	a.releaseContainer(in, p.run.c)
}

// resume continues a parked invocation with its call's result.
func (a *Agent) resume(ctx context.Context, log zerolog.Logger, in *instance, req *dispatchpb.DispatchRequest) (*dispatchpb.DispatchResponse, error) {
	p := a.unpark(in, req.GetInvocationId())
	if p == nil {
		// Dropped past its deadline (ember-init ended it), or this agent
		// restarted since: the invocation is over, the instance is fine.
		log.Warn().Msg("resume of an invocation no longer parked here")
		return &dispatchpb.DispatchResponse{Status: dispatchpb.Status_STATUS_TIMEOUT, ErrorType: "Sandbox.Timedout",
			Payload: []byte(`{"errorMessage":"the invocation was no longer waiting for its call (past its deadline, or its agent restarted)","errorType":"Sandbox.Timedout"}`)}, nil
	}
	r := p.run
	defer a.releaseContainer(in, r.c) // park's
	p.mu.Lock()                       // a checkpoint under way ends first
	p.gone = true
	cp := p.cp
	p.mu.Unlock()
	t0 := time.Now()
	if cp != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointTimeout)
		pid, wait, err := a.restore(rctx, r.c, cp)
		cancel()
		_ = os.RemoveAll(cp.dir)
		if err != nil {
			// Its end reaches ember-init with the shim's: the invocation
			// crashed. The container goes (CRIU's network lock may stay).
			log.Error().Err(err).Msg("restore of a checkpointed invocation failed")
			_ = unix.PidfdSendSignal(cp.shimFD, unix.SIGKILL, nil, 0)
			a.retireContainer(in, r.c, true, "its checkpoint could not be restored")
		}
		if pid > 0 {
			go watchRestored(log, r.c, pid, cp.shimFD, wait) // it closes the pidfd
		} else {
			cp.release()
		}
		log.Info().Int64("restore_us", time.Since(t0).Microseconds()).Dur("parked_for", time.Since(p.at)).Msg("invocation restored and resumed")
	} else {
		if err := r.c.cg.Freeze(false); err != nil {
			log.Warn().Err(err).Msg("thaw a parked container")
		}
		log.Info().Int64("thaw_us", time.Since(t0).Microseconds()).Dur("parked_for", time.Since(p.at)).Msg("invocation resumed")
	}
	rs := req.GetResume()
	cr := initproto.CallResult{InvocationID: req.GetInvocationId(), ContainerID: r.c.id, CallID: p.callID,
		ErrorType: rs.GetErrorType(), Error: rs.GetError()}
	if cr.Error == "" {
		cr.Status = initStatus(rs.GetStatus())
	}
	if err := r.client.callResult(cr, rs.GetPayload()); err != nil {
		r.pending.done()
		return nil, err
	}
	r.sent = time.Now()
	return a.finish(ctx, log, r, nil)
}

// initStatus is mapStatus's inverse.
func initStatus(s dispatchpb.Status) string {
	switch s {
	case dispatchpb.Status_STATUS_OK:
		return initproto.StatusOK
	case dispatchpb.Status_STATUS_TIMEOUT:
		return initproto.StatusTimeout
	case dispatchpb.Status_STATUS_CRASHED:
		return initproto.StatusCrashed
	}
	return initproto.StatusFunctionError
}
