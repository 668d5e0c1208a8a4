package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A function may call another through the Invoke API its runtime serves
// (ember-init's, Lambda's 2015-03-31 path) and wait for the result. The
// agent then parks the caller (its container frozen, see hostagent's
// park.go) and answers STATUS_SUSPENDED with the call, and the claim on the
// instance goes back to the pool: other invocations run there while the
// call runs. serveCalls runs the call as an invocation of its own, claims
// the caller's instance again by id and resumes the caller with the
// result, as many times as the caller calls.

// MaxCallDepth bounds a chain of calls (A calls B calls C ...): each
// caller waits parked on an instance, so a function calling itself for
// ever would take every instance.
const MaxCallDepth = 8

// serveCalls runs call for inv, suspended on c's instance, and resumes inv
// there with the result; it returns inv's final result. With RunToEnd the
// caller hanging up stops nothing, as for any invocation that holds an
// instance.
func (s *Scheduler) serveCalls(ctx context.Context, inv *invoke.Invocation, v registry.Version, c pool.Claim, vk string,
	logSvc *dispatchpb.LogService, class string, call *dispatchpb.Call) (invoke.Result, error) {
	if inv.RunToEnd {
		ctx = context.WithoutCancel(ctx)
	}
	for {
		deadline := time.UnixMilli(call.GetDeadlineUnixMs())
		t0 := time.Now()
		resume := s.runCall(ctx, inv, call, deadline)
		t1 := time.Now()
		res, next, rc, err := s.resumeParked(ctx, inv, v, c, call.GetRoom(), vk, logSvc, class, resume, deadline)
		s.log.Debug().Str("invocation", inv.ID).Dur("call", t1.Sub(t0)).Dur("resume", time.Since(t1)).Msg("call served")
		if err != nil || next == nil {
			return res, err
		}
		call, c = next, rc
	}
}

// resumeParked dispatches the resume of inv, parked on c's instance: with
// released, the claim c went back to the pool and the instance is claimed
// again first. A resume answered Aborted (a checkpointed invocation's
// memory went to others meanwhile) is tried again, claim and all, until
// the deadline. It returns the claim the resume ran under.
func (s *Scheduler) resumeParked(ctx context.Context, inv *invoke.Invocation, v registry.Version, c pool.Claim, released bool,
	vk string, logSvc *dispatchpb.LogService, class string, resume *dispatchpb.Resume, deadline time.Time) (invoke.Result, *dispatchpb.Call, pool.Claim, error) {
	id, agent := c.InstanceID, c.Agent
	for {
		if released {
			var err error
			c, err = s.claimParked(ctx, id, inv.Tenant, logSvc.GetId(), deadline)
			if errors.Is(err, errPastDeadline) { // ember-init ends the parked invocation at its deadline
				return invoke.Result{InvocationID: inv.ID, Status: invoke.StatusTimeout, ErrorType: "Sandbox.Timedout",
					Payload: []byte(`{"errorMessage":"the instance stayed busy until the invocation's deadline","errorType":"Sandbox.Timedout"}`),
					Agent:   agent, Instance: id}, nil, c, nil
			}
			if err != nil {
				return invoke.Result{}, nil, c, fmt.Errorf("resume on instance %s: %w", id, err)
			}
		}
		var held []pool.Claim
		res, next, _, err := s.dispatch(ctx, inv, v, c, vk, logSvc, &held, class, resume)
		for _, h := range held {
			s.release(ctx, h, "", true)
		}
		if err == nil || status.Code(err) != codes.Aborted || !time.Now().Before(deadline) {
			return res, next, c, err
		}
		released = true // the Aborted claim went back with held
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return invoke.Result{}, nil, c, ctx.Err()
		}
	}
}

// releaseSuspended gives back the claim of an invocation that was
// suspended, when its instance has room for others: idle again, but no
// longer hot for its version (its container waits parked: the version's
// next invocation must not be sent there). Without room it keeps it.
func (s *Scheduler) releaseSuspended(ctx context.Context, c pool.Claim, vk string, call *dispatchpb.Call) {
	if !call.GetRoom() {
		return
	}
	rctx, cancel := detached(ctx)
	defer cancel()
	if err := s.pool.DropHot(rctx, c.InstanceID, vk); err != nil {
		s.log.Warn().Err(err).Str("instance", c.InstanceID).Msg("drop a parked version's hot mark")
	}
	s.release(ctx, c, "", true)
}

// runCall runs the call a suspended invocation waits for and returns what
// resumes it: the call's result, or why the platform could not run it.
func (s *Scheduler) runCall(ctx context.Context, inv *invoke.Invocation, call *dispatchpb.Call, deadline time.Time) *dispatchpb.Resume {
	if inv.CallDepth+1 >= MaxCallDepth {
		return &dispatchpb.Resume{Error: fmt.Sprintf("call depth limit: %d invocations already wait for calls", MaxCallDepth-1)}
	}
	sub := &invoke.Invocation{
		ID: invoke.NewID(), Tenant: inv.Tenant, Function: call.GetFunction(), Qualifier: call.GetQualifier(),
		Payload: call.GetPayload(), Deadline: deadline, TraceID: inv.TraceID, Source: "call:" + inv.Function,
		RunToEnd: true, CallDepth: inv.CallDepth + 1, LogService: inv.LogService,
		Cause: invoke.Cause{Function: inv.Function, Started: time.Now()},
	}
	s.log.Info().Str("invocation", inv.ID).Str("call", sub.ID).Str("function", sub.Function).Msg("invocation waits for a call")
	res, err := s.Invoke(ctx, sub)
	if err != nil {
		return &dispatchpb.Resume{Error: err.Error()}
	}
	return &dispatchpb.Resume{Payload: res.Payload, ErrorType: res.ErrorType, Status: dispatchStatus(res.Status)}
}

// errPastDeadline: the parked invocation's instance stayed busy until its
// deadline.
var errPastDeadline = errors.New("the instance stayed busy until the invocation's deadline")

// claimParked claims the instance a suspended invocation is parked on,
// waiting while another claim and one beside it hold it, up to deadline.
func (s *Scheduler) claimParked(ctx context.Context, id, tenant, logService string, deadline time.Time) (pool.Claim, error) {
	lease := deadline.Add(dispatchSlack + s.cfg.LeaseGrace)
	backoff := time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, claimTimeout)
		c, ok, err := s.pool.ClaimInstance(cctx, id, tenant, logService, lease)
		cancel()
		if err != nil {
			return pool.Claim{}, err
		}
		if ok {
			return c, nil
		}
		// Both claims an instance takes are held: one ends soon (the
		// instance's main claim and one beside it, each bounded by its
		// invocation's deadline).
		if time.Now().Add(backoff).After(deadline) {
			return pool.Claim{}, errPastDeadline
		}
		if !sleepCtx(ctx, backoff) {
			return pool.Claim{}, ctx.Err()
		}
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// sleepCtx waits d unless ctx ends first (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
