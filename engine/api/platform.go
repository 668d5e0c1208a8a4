package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/codestore"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/tenants"
)

func bindingJSON(b registry.Binding) wire.Binding {
	en := b.Enabled
	retries := b.MaxRetryAttempts
	out := wire.Binding{ID: b.ID, Tenant: b.Tenant, Function: b.Function, Qualifier: b.Qualifier, Topic: b.Topic,
		GroupID: b.GroupID, BatchSize: b.BatchSize, BatchWindowMs: b.BatchWindow.Milliseconds(),
		MaxBatchBytes: b.MaxBatchBytes, StartingPosition: b.StartingPosition, StartingTimestamp: b.StartingTimestamp,
		Ordering: b.Ordering, MaxConcurrency: b.MaxConcurrency, MaxRetryAttempts: &retries,
		MaxRecordAgeS: int64(b.MaxRecordAge / time.Second), BisectOnError: b.BisectOnError,
		ReportBatchItemFailures: b.ReportBatchItemFailures, IsolationLevel: b.IsolationLevel,
		ResultTopic: b.ResultTopic, DLQTopic: b.DLQTopic, Enabled: &en, Created: b.Created}
	for _, f := range b.Filters {
		out.Filters = append(out.Filters, json.RawMessage(f))
	}
	if rw := b.Rewind; rw != nil {
		out.Rewind = &wire.Rewind{ID: rw.ID, To: rw.To, Offsets: rw.Offsets}
	}
	return out
}

func (s *Server) putBinding(w http.ResponseWriter, r *http.Request, tenant string) {
	var in wire.Binding
	if !s.decode(w, r, &in, "binding") {
		return
	}
	id := r.PathValue("id")
	switch {
	case in.ID != "" && in.ID != id:
		s.fail(w, r, invalid("body id %q differs from path id %q", in.ID, id))
		return
	case in.Tenant != "" && in.Tenant != tenant:
		s.fail(w, r, invalid("body tenant %q is not the tenant of the API key", in.Tenant))
		return
	case in.GroupID != "" && in.GroupID != registry.GroupID(tenant, id):
		s.fail(w, r, invalid("group_id is Ember's (%s), it cannot be chosen", registry.GroupID(tenant, id)))
		return
	case in.BatchWindowMs < 0 || in.MaxRecordAgeS < 0:
		s.fail(w, r, invalid("batch_window_ms and max_record_age_s must not be negative"))
		return
	case in.Rewind != nil:
		s.fail(w, r, invalid("rewind is asked for with POST /v1/bindings/%s/rewind", id))
		return
	}
	set := settings.Settings{
		BatchSize: in.BatchSize, BatchWindow: time.Duration(in.BatchWindowMs) * time.Millisecond,
		MaxBatchBytes: in.MaxBatchBytes, StartingPosition: in.StartingPosition, StartingTimestamp: in.StartingTimestamp,
		Ordering: in.Ordering, MaxConcurrency: in.MaxConcurrency, MaxRetryAttempts: settings.DefaultMaxRetryAttempts,
		MaxRecordAge: time.Duration(in.MaxRecordAgeS) * time.Second, BisectOnError: in.BisectOnError,
		ReportBatchItemFailures: in.ReportBatchItemFailures, IsolationLevel: in.IsolationLevel,
	}
	if in.MaxRetryAttempts != nil {
		set.MaxRetryAttempts = *in.MaxRetryAttempts
	}
	for i, f := range in.Filters {
		var buf bytes.Buffer
		if err := json.Compact(&buf, f); err != nil {
			s.fail(w, r, invalid("filter %d: %v", i, err))
			return
		}
		set.Filters = append(set.Filters, buf.String())
	}
	enabled := in.Enabled == nil || *in.Enabled
	b, err := s.deps.Registry.PutBinding(r.Context(), registry.Binding{ID: id, Tenant: tenant, Function: in.Function,
		Qualifier: in.Qualifier, Topic: in.Topic, Settings: set,
		ResultTopic: in.ResultTopic, DLQTopic: in.DLQTopic, Enabled: enabled})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bindingJSON(b))
}

// rewindBinding asks the binding's consumers to move its group's offsets.
func (s *Server) rewindBinding(w http.ResponseWriter, r *http.Request, tenant string) {
	var in wire.Rewind
	if !s.decode(w, r, &in, "rewind") {
		return
	}
	if in.ID != 0 {
		s.fail(w, r, invalid("a rewind's id is Ember's, it cannot be chosen"))
		return
	}
	b, err := s.deps.Registry.RewindBinding(r.Context(), tenant, r.PathValue("id"), settings.Rewind{To: in.To, Offsets: in.Offsets})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bindingJSON(b))
}

// redriveBinding invokes the binding's function again with its
// dead-lettered records, answering when they are all handled.
func (s *Server) redriveBinding(w http.ResponseWriter, r *http.Request, tenant string) {
	var in wire.Redrive
	if !s.decode(w, r, &in, "redrive") {
		return
	}
	if s.deps.Redriver == nil {
		s.fail(w, r, fmt.Errorf("redrive: no consumers here: %w", registry.ErrUnavailable))
		return
	}
	b, err := s.deps.Registry.GetBinding(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if in.To.IsZero() {
		in.To = time.Now()
	}
	if !in.From.Before(in.To) {
		s.fail(w, r, invalid("redrive range: from %v is not before to %v", in.From, in.To))
		return
	}
	res, err := s.deps.Redriver.Redrive(r.Context(), b, in.From, in.To)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) getBinding(w http.ResponseWriter, r *http.Request, tenant string) {
	b, err := s.deps.Registry.GetBinding(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bindingJSON(b))
}

func (s *Server) listBindings(w http.ResponseWriter, r *http.Request, tenant string) {
	bs, err := s.deps.Registry.ListBindings(r.Context(), tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.Bindings{Bindings: make([]wire.Binding, 0, len(bs))}
	for _, b := range bs {
		out.Bindings = append(out.Bindings, bindingJSON(b))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteBinding(w http.ResponseWriter, r *http.Request, tenant string) {
	if err := s.deps.Registry.DeleteBinding(r.Context(), tenant, r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// status: live agents, pool occupancy per class, and the bindings with
// their lag: the tenant's own, or every tenant's for the administrator.
func (s *Server) status(w http.ResponseWriter, r *http.Request, p tenants.Principal) {
	tenant := p.Tenant
	ctx := r.Context()
	out := wire.Status{Agents: []wire.Agent{}, Occupancy: []wire.Occupancy{}, Bindings: []wire.BindingStatus{}, State: []wire.StateResource{}}
	if s.deps.Pool != nil {
		agents, err := s.deps.Pool.Agents(ctx)
		if err != nil {
			s.fail(w, r, fmt.Errorf("agents: %w: %w", registry.ErrUnavailable, err))
			return
		}
		for _, a := range agents {
			wa := wire.Agent{ID: a.ID, Started: a.Started}
			if p.Admin { // where agents listen is the operator's business
				wa.Addr = a.Addr
			}
			out.Agents = append(out.Agents, wa)
		}
		occ, err := s.deps.Pool.Occupancy(ctx)
		if err != nil {
			s.fail(w, r, fmt.Errorf("occupancy: %w: %w", registry.ErrUnavailable, err))
			return
		}
		mine := map[string]bool{} // sub-pool classes this principal may see
		if !p.Admin {
			sps, err := s.deps.Pool.SubPools(ctx)
			if err != nil {
				s.fail(w, r, fmt.Errorf("sub-pools: %w: %w", registry.ErrUnavailable, err))
				return
			}
			for _, sp := range sps {
				if sp.Tenant == tenant {
					mine[pool.SubPoolClass(sp.Name)] = true
				}
			}
		}
		for _, o := range occ {
			if _, isSub := pool.SubPoolOf(o.Class); isSub && !p.Admin && !mine[o.Class] {
				continue // another tenant's sub-pool
			}
			wo := wire.Occupancy{Class: o.Class, Warm: o.Warm, Active: o.Active, Busy: o.Busy}
			if s.deps.WaitTimes != nil {
				n, p50, p99 := s.deps.WaitTimes(o.Class)
				wo.Waited, wo.WaitP50Ms, wo.WaitP99Ms = n, ms(p50), ms(p99)
			}
			if s.deps.Waiting != nil {
				wo.Waiting = s.deps.Waiting(o.Class)
			}
			out.Occupancy = append(out.Occupancy, wo)
		}
		rs, err := s.deps.Pool.StateResources(ctx)
		if err != nil {
			s.fail(w, r, fmt.Errorf("state resources: %w: %w", registry.ErrUnavailable, err))
			return
		}
		for _, x := range rs {
			if p.Admin || x.Tenant == tenant {
				out.State = append(out.State, wire.StateResource{Agent: x.Agent, Tenant: x.Tenant, Name: x.Name,
					SizeBytes: x.SizeBytes, UsedBytes: x.UsedBytes, Attached: x.Attached})
			}
		}
	}
	out.Usage = []wire.FunctionUsage{}
	if s.deps.Usage != nil {
		out.Usage = s.deps.Usage.Usage(tenant)
	}
	out.Profiles = []wire.TaskProfile{}
	if s.deps.Profiles != nil {
		ps, err := s.deps.Profiles.Profiles(ctx, tenant)
		if err != nil {
			s.fail(w, r, fmt.Errorf("task profiles: %w: %w", registry.ErrUnavailable, err))
			return
		}
		out.Profiles = ps
	}
	bs, err := s.deps.Registry.ListBindings(ctx, tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, b := range bs {
		st := wire.BindingStatus{Binding: bindingJSON(b)}
		if s.deps.Lag != nil {
			if lag, err := s.deps.Lag.Lag(ctx, b); err != nil {
				st.LagError = err.Error()
			} else {
				st.Lag = &lag
			}
		}
		if s.deps.Activity != nil {
			if a, ok := s.deps.Activity.Activity(b.Key()); ok {
				st.Activity = &a
			}
		}
		out.Bindings = append(out.Bindings, st)
	}
	writeJSON(w, http.StatusOK, out)
}

// code streams a package by digest to a tenant that deployed it, or to the
// administrator.
func (s *Server) code(w http.ResponseWriter, r *http.Request, p tenants.Principal) {
	digest := r.PathValue("digest")
	if _, err := codestore.ParseDigest(digest); err != nil {
		s.fail(w, r, err)
		return
	}
	if !p.Admin {
		ok, err := s.deps.Registry.HasCode(r.Context(), p.Tenant, digest)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if !ok {
			s.fail(w, r, fmt.Errorf("package %s: %w", digest, registry.ErrNotFound))
			return
		}
	}
	s.serveCode(w, r, digest)
}

// CodeHandler serves GET /v1/code/{digest} to anyone: it is for a listener
// that authenticates its clients itself (emberd's peer listener, which
// takes only agent certificates).
func (s *Server) CodeHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/code/{digest}", func(w http.ResponseWriter, r *http.Request) {
		s.serveCode(w, r, r.PathValue("digest"))
	})
	return mux
}

// serveCode streams a package (Range and HEAD supported), fetched first
// from another replica when this one lacks it.
func (s *Server) serveCode(w http.ResponseWriter, r *http.Request, digest string) {
	if s.deps.Replicas != nil {
		if err := s.deps.Replicas.Ensure(r.Context(), digest); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	rc, size, err := s.deps.Code.Open(digest)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("ETag", `"`+digest+`"`)
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	if f, ok := rc.(*os.File); ok {
		http.ServeContent(w, r, "", time.Time{}, f)
		return
	}
	w.Header().Set("Content-Length", fmt.Sprint(size))
	_, _ = io.Copy(w, rc)
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
