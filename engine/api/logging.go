package api

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/registry"
)

// logServiceJSON shows a logging service without its credentials.
func logServiceJSON(s registry.LogService) wire.LogService {
	kind := "none"
	switch a := s.Authorization; {
	case strings.HasPrefix(a, "Bearer "):
		kind = "bearer"
	case strings.HasPrefix(a, "Basic "):
		kind = "basic"
	case a != "":
		kind = "other"
	}
	return wire.LogService{Name: s.Name, Endpoint: s.Endpoint, Default: s.Default, Credentials: kind,
		Revision: s.Revision, Created: s.Created, Updated: s.Updated}
}

// putLogService creates or replaces one of the tenant's logging services.
// The credentials are stored for dispatches and never shown or logged.
func (s *Server) putLogService(w http.ResponseWriter, r *http.Request, tenant string) {
	var in wire.LogService
	if !s.decode(w, r, &in, "logging service") {
		return
	}
	auth := in.Authorization
	n := 0
	for _, c := range []string{in.BearerToken, in.BasicAuth, in.Authorization} {
		if c != "" {
			n++
		}
	}
	switch {
	case n > 1:
		s.fail(w, r, invalid("give one of bearer_token, basic_auth and authorization"))
		return
	case in.BearerToken != "":
		auth = "Bearer " + in.BearerToken
	case in.BasicAuth != "":
		if !strings.Contains(in.BasicAuth, ":") {
			s.fail(w, r, invalid("basic_auth: want user:password"))
			return
		}
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(in.BasicAuth))
	}
	out, err := s.deps.Registry.PutLogService(r.Context(), registry.LogService{
		Tenant: tenant, Name: r.PathValue("name"), Endpoint: in.Endpoint, Authorization: auth, Default: in.Default})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("tenant", tenant).Str("log_service", out.Name).Int64("revision", out.Revision).
		Bool("default", out.Default).Msg("logging service saved")
	writeJSON(w, http.StatusOK, logServiceJSON(out))
}

func (s *Server) listLogServices(w http.ResponseWriter, r *http.Request, tenant string) {
	l, err := s.deps.Registry.ListLogServices(r.Context(), tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.LogServices{LogServices: []wire.LogService{}}
	for _, ls := range l {
		out.LogServices = append(out.LogServices, logServiceJSON(ls))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteLogService(w http.ResponseWriter, r *http.Request, tenant string) {
	name := r.PathValue("name")
	if err := s.deps.Registry.DeleteLogService(r.Context(), tenant, name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info().Str("tenant", tenant).Str("log_service", name).Msg("logging service deleted")
	w.WriteHeader(http.StatusNoContent)
}
