package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/tenants"
)

// errForbidden: authenticated, but not allowed this route (403).
var errForbidden = errors.New("forbidden")

// authenticate returns the request's principal; a failure has been answered.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (tenants.Principal, bool) {
	p, err := s.deps.Tenants.Authenticate(r.Context(), tenants.Bearer(r))
	if err != nil {
		s.fail(w, r, err)
		return tenants.Principal{}, false
	}
	return p, true
}

// asTenant runs h for a tenant's key; the administrator key is refused
// (403): it is not a tenant, and nothing acts on a tenant's behalf.
func (s *Server) asTenant(h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if p.Tenant == "" {
			s.writeErr(w, r, http.StatusForbidden, wire.ErrForbidden, "this route acts as a tenant: use a tenant's API key, not the administrator's")
			return
		}
		h(w, r, p.Tenant)
	}
}

// asAdmin runs h for the administrator key only.
func (s *Server) asAdmin(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !p.Admin {
			s.writeErr(w, r, http.StatusForbidden, wire.ErrForbidden, "this route needs the administrator key")
			return
		}
		h(w, r)
	}
}

// asAnyone runs h for any valid key, telling it who is asking.
func (s *Server) asAnyone(h func(http.ResponseWriter, *http.Request, tenants.Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if p, ok := s.authenticate(w, r); ok {
			h(w, r, p)
		}
	}
}

// scrape guards /metrics: the metrics token or the administrator key.
func (s *Server) scrape(next http.Handler) http.Handler {
	var tokenSum [sha256.Size]byte
	if s.cfg.MetricsToken != "" {
		tokenSum = sha256.Sum256([]byte(s.cfg.MetricsToken))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := tenants.Bearer(r)
		if s.cfg.MetricsToken != "" && key != "" {
			sum := sha256.Sum256([]byte(key))
			if subtle.ConstantTimeCompare(sum[:], tokenSum[:]) == 1 {
				next.ServeHTTP(w, r)
				return
			}
		}
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if !p.Admin {
			s.writeErr(w, r, http.StatusForbidden, wire.ErrForbidden, "metrics need the scrape token or the administrator key")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, p tenants.Principal) {
	writeJSON(w, http.StatusOK, wire.Whoami{Tenant: p.Tenant, Admin: p.Admin})
}
