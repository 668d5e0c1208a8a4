package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The page and its assets come from the binary, under a policy that lets
// them load nothing from elsewhere.
func TestServesEmbeddedAssets(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle("GET /ui/", Handler("/ui/"))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]string{
		"/ui/":          `<script src="app.js" defer></script>`,
		"/ui/app.js":    `api("/v1/status")`,
		"/ui/style.css": `.badge.OK`,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, resp.StatusCode, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
	if resp, err := http.Get(srv.URL + "/ui/missing.js"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("a missing asset: %v %v", resp.StatusCode, err)
	}
}
