package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/tenants"
)

func subPoolJSON(p pool.SubPool) wire.SubPool {
	return wire.SubPool{
		Name: p.Name, Tenant: p.Tenant, MemoryMB: p.MemoryMB, VCPU: float64(p.MilliCPU) / 1000,
		TmpMB: p.TmpMB, Pids: p.PidsLimit, Network: p.Network, MinWarm: p.MinWarm, Max: p.Max,
		Class: pool.SubPoolClass(p.Name),
	}
}

// putSubPool creates or replaces a sub-pool for a tenant that exists.
func (s *Server) putSubPool(w http.ResponseWriter, r *http.Request) {
	if s.deps.Pool == nil {
		s.fail(w, r, fmt.Errorf("no pool state: %w", registry.ErrUnavailable))
		return
	}
	var in wire.SubPool
	if !s.decode(w, r, &in, "sub-pool") {
		return
	}
	if in.VCPU < 0 || in.VCPU > pool.MaxSubPoolMilliCPU/1000 {
		s.fail(w, r, invalid("vcpu %v: want 0.1..%d", in.VCPU, pool.MaxSubPoolMilliCPU/1000))
		return
	}
	ts, err := s.deps.Tenants.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !slices.ContainsFunc(ts, func(t tenants.Tenant) bool { return t.Name == in.Tenant }) {
		s.fail(w, r, fmt.Errorf("sub-pool tenant %q: %w", in.Tenant, registry.ErrNotFound))
		return
	}
	p := pool.SubPool{
		Name: r.PathValue("name"), Tenant: in.Tenant, MemoryMB: in.MemoryMB, MilliCPU: int64(math.Round(in.VCPU * 1000)),
		TmpMB: in.TmpMB, PidsLimit: in.Pids, Network: in.Network, MinWarm: in.MinWarm, Max: in.Max,
	}
	out, err := s.deps.Pool.PutSubPool(r.Context(), p)
	if errors.Is(err, pool.ErrInvalidSubPool) {
		err = fmt.Errorf("%w: %w", err, registry.ErrInvalid)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("subpool", out.Name).Str("tenant", out.Tenant).Int64("memory_mb", out.MemoryMB).
		Int64("millicpu", out.MilliCPU).Int("min_warm", out.MinWarm).Int("max", out.Max).Msg("sub-pool saved")
	writeJSON(w, http.StatusOK, subPoolJSON(out))
}

// listSubPools: the administrator sees every sub-pool, a tenant its own.
func (s *Server) listSubPools(w http.ResponseWriter, r *http.Request, p tenants.Principal) {
	if s.deps.Pool == nil {
		s.fail(w, r, fmt.Errorf("no pool state: %w", registry.ErrUnavailable))
		return
	}
	l, err := s.deps.Pool.SubPools(r.Context())
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %w", registry.ErrUnavailable, err))
		return
	}
	out := wire.SubPools{SubPools: []wire.SubPool{}}
	for _, sp := range l {
		if p.Admin || sp.Tenant == p.Tenant {
			out.SubPools = append(out.SubPools, subPoolJSON(sp))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteSubPool(w http.ResponseWriter, r *http.Request) {
	if s.deps.Pool == nil {
		s.fail(w, r, fmt.Errorf("no pool state: %w", registry.ErrUnavailable))
		return
	}
	name := r.PathValue("name")
	ok, err := s.deps.Pool.DeleteSubPool(r.Context(), name)
	if err != nil {
		s.fail(w, r, fmt.Errorf("%w: %w", registry.ErrUnavailable, err))
		return
	}
	if !ok {
		s.fail(w, r, fmt.Errorf("sub-pool %q: %w", name, registry.ErrNotFound))
		return
	}
	s.log.Info().Str("subpool", name).Msg("sub-pool deleted")
	w.WriteHeader(http.StatusNoContent)
}
