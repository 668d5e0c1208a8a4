package api

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/registry"
)

// maxLagHistory is the longest history GET /v1/bindings/{id}/lag returns.
const maxLagHistory = time.Hour

// bindingLag answers GET /v1/bindings/{id}/lag?since=DURATION: the
// binding's lag now and the monitor's samples over the last DURATION
// (default 15m, at most 1h).
func (s *Server) bindingLag(w http.ResponseWriter, r *http.Request, tenant string) {
	if s.deps.Lag == nil {
		s.fail(w, r, fmt.Errorf("lag: no consumers here: %w", registry.ErrUnavailable))
		return
	}
	since := 15 * time.Minute
	if v := r.URL.Query().Get("since"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > maxLagHistory {
			s.fail(w, r, invalid("since %q: want a duration up to %s", v, maxLagHistory))
			return
		}
		since = d
	}
	b, err := s.deps.Registry.GetBinding(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out, ok := s.deps.Lag.History(b.Key(), time.Now().Add(-since))
	if !ok {
		out = wire.LagHistory{Binding: b.ID, History: []wire.PartitionHistory{}}
	}
	out.Binding = b.ID
	lag, err := s.deps.Lag.Lag(r.Context(), b)
	if err != nil {
		s.fail(w, r, fmt.Errorf("lag of binding %q: %w: %w", b.ID, registry.ErrUnavailable, err))
		return
	}
	out.Lag = lag
	writeJSON(w, http.StatusOK, out)
}

// deadLetters answers GET /v1/bindings/{id}/dlq?limit=N (default 20, at
// most 1000): the binding's latest dead-lettered records.
func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request, tenant string) {
	if s.deps.Redriver == nil {
		s.fail(w, r, fmt.Errorf("dead letters: no consumers here: %w", registry.ErrUnavailable))
		return
	}
	limit := 20
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(w, r, invalid("limit %q: want 1 to 1000", v))
			return
		}
		limit = n
	}
	b, err := s.deps.Registry.GetBinding(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	dls, err := s.deps.Redriver.DeadLetters(r.Context(), b, limit)
	if err != nil {
		s.fail(w, r, fmt.Errorf("dead letters of %q: %w: %w", b.ID, registry.ErrUnavailable, err))
		return
	}
	if dls == nil {
		dls = []wire.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, wire.DeadLetters{DeadLetters: dls})
}
