package api

import (
	"encoding/json"
	"net/http"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/tenants"
)

func tenantJSON(t tenants.Tenant) wire.Tenant {
	return wire.Tenant{Name: t.Name, Created: t.Created, Rotated: t.Rotated, Revoked: t.Revoked}
}

// createTenant answers the new tenant's key: the only time it is shown.
func (s *Server) createTenant(w http.ResponseWriter, r *http.Request) {
	var in wire.CreateTenant
	if !s.decode(w, r, &in, "tenant") {
		return
	}
	t, key, err := s.deps.Tenants.Create(r.Context(), in.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("tenant", t.Name).Msg("tenant created")
	writeJSON(w, http.StatusCreated, wire.TenantKey{Name: t.Name, APIKey: key})
}

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request) {
	ts, err := s.deps.Tenants.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.Tenants{Tenants: make([]wire.Tenant, 0, len(ts))}
	for _, t := range ts {
		out.Tenants = append(out.Tenants, tenantJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
}

// rotateKey issues a new key and revokes the tenant's older ones.
func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	key, err := s.deps.Tenants.Rotate(r.Context(), name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("tenant", name).Msg("tenant key rotated")
	writeJSON(w, http.StatusOK, wire.TenantKey{Name: name, APIKey: key})
}

// revokeKeys removes every key of the tenant.
func (s *Server) revokeKeys(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.deps.Tenants.Revoke(r.Context(), name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("tenant", name).Msg("tenant keys revoked")
	w.WriteHeader(http.StatusNoContent)
}

// decode reads a JSON body of at most maxConfigBytes into v, rejecting
// unknown fields; a failure has been answered.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, what string) bool {
	return s.decodeLimit(w, r, v, what, maxConfigBytes)
}

// decodeLimit is decode with a body limit of its own.
func (s *Server) decodeLimit(w http.ResponseWriter, r *http.Request, v any, what string, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		s.fail(w, r, wrapBody(err, what))
		return false
	}
	return true
}
