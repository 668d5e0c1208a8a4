package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/asyncinv"
	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
)

// Async queues asynchronous invocations and reads their records
// (*asyncinv.Queue).
type Async interface {
	Enqueue(ctx context.Context, r asyncinv.Request) error
	// Defer records r (NeededBy set) to run by then; timeout is the
	// function's.
	Defer(ctx context.Context, r asyncinv.Request, timeout time.Duration) error
	Get(ctx context.Context, tenant, id string) (asyncinv.Invocation, error)
}

var _ Async = (*asyncinv.Queue)(nil)

// invokeAsync answers an invoke with X-Ember-Invocation-Type: Event: 202
// and the invocation id once the request is queued durably.
func (s *Server) invokeAsync(w http.ResponseWriter, r *http.Request, tenant, name, qualifier string) {
	if s.deps.Async == nil {
		s.fail(w, r, fmt.Errorf("asynchronous invocation: not served here: %w", registry.ErrUnavailable))
		return
	}
	// The longest timeout it may run with: a deferred one starts early
	// enough for it.
	timeout, err := s.deps.Registry.LongestTimeout(r.Context(), tenant, name, qualifier)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var neededBy time.Time
	if h := r.Header.Get(wire.HeaderNeededBy); h != "" {
		if neededBy, err = time.Parse(time.RFC3339Nano, h); err != nil {
			s.fail(w, r, invalid("%s %q: want an RFC 3339 time", wire.HeaderNeededBy, h))
			return
		}
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxAsyncPayloadBytes))
	if err != nil {
		s.fail(w, r, wrapBody(err, "payload"))
		return
	}
	req := asyncinv.Request{ID: invoke.NewID(), Tenant: tenant, Function: name, Qualifier: qualifier, Payload: payload,
		Enqueued: time.Now(), TraceID: traceID(r), NeededBy: neededBy}
	if neededBy.IsZero() {
		err = s.deps.Async.Enqueue(r.Context(), req)
	} else {
		err = s.deps.Async.Defer(r.Context(), req, timeout)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set(wire.HeaderInvocationID, req.ID)
	writeJSON(w, http.StatusAccepted, wire.Accepted{InvocationID: req.ID})
}

// getInvocation answers GET /v1/invocations/{id} for the tenant's own.
func (s *Server) getInvocation(w http.ResponseWriter, r *http.Request, tenant string) {
	if s.deps.Async == nil {
		s.fail(w, r, fmt.Errorf("asynchronous invocation: not served here: %w", registry.ErrUnavailable))
		return
	}
	inv, err := s.deps.Async.Get(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wire.Invocation{ID: inv.ID, Function: inv.Function, Qualifier: inv.Qualifier, State: inv.State,
		Attempts: inv.Attempts, Enqueued: inv.Enqueued, Updated: inv.Updated, Started: inv.Started, NeededBy: inv.NeededBy,
		LatestStart: inv.LatestStart, Status: inv.Status, Condition: inv.Condition,
		Version: inv.Version, Result: inv.Result, ResultTruncated: inv.ResultTruncated, Delivered: inv.Delivered})
}

func (s *Server) putAsyncConfig(w http.ResponseWriter, r *http.Request, tenant string) {
	var in wire.AsyncConfig
	if !s.decode(w, r, &in, "async config") {
		return
	}
	c := registry.AsyncConfig{MaxRetryAttempts: registry.MaxAsyncRetries, MaxEventAge: time.Duration(in.MaxEventAgeSeconds) * time.Second}
	if in.MaxRetryAttempts != nil {
		c.MaxRetryAttempts = *in.MaxRetryAttempts
	}
	var err error
	if c.OnSuccess, err = registry.ParseDestination(in.OnSuccess); err != nil {
		s.fail(w, r, err)
		return
	}
	if c.OnFailure, err = registry.ParseDestination(in.OnFailure); err != nil {
		s.fail(w, r, err)
		return
	}
	out, err := s.deps.Registry.PutAsyncConfig(r.Context(), tenant, r.PathValue("name"), c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, asyncJSON(out))
}

func (s *Server) getAsyncConfig(w http.ResponseWriter, r *http.Request, tenant string) {
	if _, err := s.deps.Registry.GetFunction(r.Context(), tenant, r.PathValue("name")); err != nil {
		s.fail(w, r, err)
		return
	}
	c, err := s.deps.Registry.AsyncConfigOf(r.Context(), tenant, r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, asyncJSON(c))
}

func asyncJSON(c registry.AsyncConfig) wire.AsyncConfig {
	n := c.MaxRetryAttempts
	return wire.AsyncConfig{MaxRetryAttempts: &n, MaxEventAgeSeconds: int64(c.MaxEventAge / time.Second),
		OnSuccess: c.OnSuccess.String(), OnFailure: c.OnFailure.String()}
}
