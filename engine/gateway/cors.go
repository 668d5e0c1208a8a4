package gateway

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/ember-run/ember/engine/registry"
)

// corsHeaders adds the CORS response headers for an allowed origin; it
// reports whether the origin is allowed.
func corsHeaders(h http.Header, c *registry.CORS, route registry.Route, origin string) bool {
	if c == nil || origin == "" {
		return false
	}
	allowed := ""
	for _, o := range c.AllowOrigins {
		if o == "*" && !c.AllowCredentials {
			allowed = "*"
			break
		}
		if o == "*" || strings.EqualFold(o, origin) {
			allowed = origin
			break
		}
	}
	if allowed == "" {
		return false
	}
	h.Set("Access-Control-Allow-Origin", allowed)
	if allowed != "*" {
		h.Add("Vary", "Origin")
	}
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if len(c.ExposeHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ", "))
	}
	return true
}

// preflight answers an OPTIONS request for route with its CORS policy.
func preflight(w http.ResponseWriter, r *http.Request, route registry.Route) {
	c := route.CORS
	h := w.Header()
	if !corsHeaders(h, c, route, r.Header.Get("Origin")) {
		message(w, http.StatusForbidden, "Forbidden")
		return
	}
	methods := c.AllowMethods
	if len(methods) == 0 {
		methods = []string{route.Method}
		if route.Method == "ANY" {
			methods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"}
		}
	}
	if want := r.Header.Get("Access-Control-Request-Method"); !slices.Contains(methods, "*") && !slices.Contains(methods, want) {
		message(w, http.StatusForbidden, "Forbidden")
		return
	}
	h.Set("Access-Control-Allow-Methods", strings.Join(methods, ", "))
	if len(c.AllowHeaders) > 0 {
		h.Set("Access-Control-Allow-Headers", strings.Join(c.AllowHeaders, ", "))
	} else if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && !route.Public {
		h.Set("Access-Control-Allow-Headers", "authorization")
	}
	if c.MaxAgeSeconds > 0 {
		h.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAgeSeconds))
	}
	w.WriteHeader(http.StatusNoContent)
}
