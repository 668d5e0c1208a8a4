package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/gateway"
	"github.com/ember-run/ember/engine/registry"
)

// putRoute creates or replaces the tenant's route of a method and path.
func (s *Server) putRoute(w http.ResponseWriter, r *http.Request, tenant string) {
	var in wire.Route
	if !s.decode(w, r, &in, "route") {
		return
	}
	rt := registry.Route{Tenant: tenant, Method: strings.ToUpper(in.Method), Path: in.Path, Function: in.Function,
		Qualifier: in.Qualifier, Public: in.Public, MaxBodyBytes: in.MaxBodyBytes,
		Timeout: time.Duration(in.TimeoutMs) * time.Millisecond}
	if c := in.CORS; c != nil {
		if len(c.AllowOrigins) == 0 {
			s.fail(w, r, invalid("route cors: allow_origins is required (\"*\" for any)"))
			return
		}
		if c.AllowCredentials && slices.Contains(c.AllowOrigins, "*") {
			s.fail(w, r, invalid("route cors: allow_credentials needs explicit origins, not \"*\""))
			return
		}
		rt.CORS = &registry.CORS{AllowOrigins: c.AllowOrigins, AllowMethods: c.AllowMethods, AllowHeaders: c.AllowHeaders,
			ExposeHeaders: c.ExposeHeaders, MaxAgeSeconds: c.MaxAgeSeconds, AllowCredentials: c.AllowCredentials}
	}
	if m := in.Mapping; m != nil {
		rt.Mapping = &registry.Mapping{Request: m.Request}
		if m.Response != nil {
			rt.Mapping.Response = &registry.ResponseMapping{StatusCode: m.Response.StatusCode, Headers: m.Response.Headers, Body: m.Response.Body}
		}
		if err := gateway.ValidateMapping(rt.Mapping); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	out, err := s.deps.Registry.PutRoute(r.Context(), rt)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.routeJSON(out))
}

func (s *Server) listRoutes(w http.ResponseWriter, r *http.Request, tenant string) {
	rts, err := s.deps.Registry.ListRoutes(r.Context(), tenant)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.Routes{Routes: make([]wire.Route, 0, len(rts))}
	for _, rt := range rts {
		out.Routes = append(out.Routes, s.routeJSON(rt))
	}
	writeJSON(w, http.StatusOK, out)
}

// deleteRoute answers DELETE /v1/routes?method=GET&path=/orders/{id}.
func (s *Server) deleteRoute(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	if err := s.deps.Registry.DeleteRoute(r.Context(), tenant, strings.ToUpper(q.Get("method")), q.Get("path")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) routeJSON(rt registry.Route) wire.Route {
	out := wire.Route{Method: rt.Method, Path: rt.Path, Function: rt.Function, Qualifier: rt.Qualifier, Public: rt.Public,
		MaxBodyBytes: rt.MaxBodyBytes, TimeoutMs: rt.Timeout.Milliseconds(), Created: rt.Created}
	if c := rt.CORS; c != nil {
		out.CORS = &wire.CORS{AllowOrigins: c.AllowOrigins, AllowMethods: c.AllowMethods, AllowHeaders: c.AllowHeaders,
			ExposeHeaders: c.ExposeHeaders, MaxAgeSeconds: c.MaxAgeSeconds, AllowCredentials: c.AllowCredentials}
	}
	if m := rt.Mapping; m != nil {
		out.Mapping = &wire.Mapping{Request: m.Request}
		if m.Response != nil {
			out.Mapping.Response = &wire.ResponseMapping{StatusCode: m.Response.StatusCode, Headers: m.Response.Headers, Body: m.Response.Body}
		}
	}
	if s.cfg.GatewayURL != "" {
		out.URL = strings.TrimSuffix(s.cfg.GatewayURL, "/") + "/" + rt.Tenant + rt.Path
	}
	return out
}
