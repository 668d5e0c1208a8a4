package tenants

import (
	"net/http"
	"strings"
)

// Bearer returns the key of a request's "Authorization: Bearer <key>"
// header ("" without one): how every Ember HTTP server receives keys.
func Bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}
