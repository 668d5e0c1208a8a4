package initd

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// FuzzRuntimeAPI: any request a function makes to its Runtime API gets a
// Lambda status code, never a panic, and completes the current invocation
// only when it is a POST to that invocation's response or error.
func FuzzRuntimeAPI(f *testing.F) {
	f.Add("POST", "invocation/req-1/response", "", []byte(`{"ok":true}`))
	f.Add("POST", "invocation/req-1/error", "Boom", []byte(`{"errorType":"X"}`))
	f.Add("POST", "invocation/other/response", "", []byte(`x`))
	f.Add("GET", "invocation/next", "", []byte(nil))
	f.Add("POST", "init/error", "Init", []byte(`{}`))
	f.Add("PUT", "invocation/req-1/response", "", []byte(`x`))
	f.Add("POST", "invocation//response", "", []byte(`x`))
	f.Add("POST", "invocation/req-1/response/extra", "", []byte(`x`))
	f.Fuzz(func(t *testing.T, method, rest, errType string, body []byte) {
		u, err := url.Parse("http://127.0.0.1/2018-06-01/runtime/" + rest)
		if !validMethod(method) || err != nil || strings.ContainsAny(rest, "?#%") {
			return // net/http would not deliver such a request
		}
		if _, err := http.NewRequest(method, u.String(), nil); err != nil {
			return
		}
		if errType != "" && !httpguts.ValidHeaderFieldValue(errType) {
			errType = ""
		}
		s := &Server{cfg: Config{MaxResponseBytes: 1 << 10}}
		c := &container{s: s}
		p := &process{c: c, next: make(chan *invocation), ready: make(chan struct{}), initErr: make(chan struct{})}
		inv := &invocation{id: "req-1", done: make(chan outcome, 1)}
		p.cur.Store(inv)
		req := httptest.NewRequest(method, u.String(), bytes.NewReader(body))
		if errType != "" {
			req.Header.Set(headerErrorType, errType)
		}
		ctx, cancel := context.WithTimeout(req.Context(), time.Millisecond) // next blocks for an invocation
		defer cancel()
		w := httptest.NewRecorder()
		p.ServeHTTP(w, req.WithContext(ctx))
		if !slices.Contains([]int{200, 202, 400, 404, 405, 413}, w.Code) {
			t.Fatalf("%s %s: status %d", method, rest, w.Code)
		}
		completing := method == "POST" && (rest == "invocation/req-1/response" || rest == "invocation/req-1/error")
		select {
		case o := <-inv.done:
			if !completing {
				t.Fatalf("%s %s completed the invocation: %+v", method, rest, o)
			}
			if w.Code != 202 && w.Code != 413 {
				t.Fatalf("completed with status %d", w.Code)
			}
		default:
			if completing && w.Code == 202 {
				t.Fatalf("%s %s answered 202 without completing", method, rest)
			}
		}
	})
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

var _ http.Handler = (*process)(nil)
