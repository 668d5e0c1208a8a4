package initd

import (
	"bufio"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// FuzzRuntimeAPI: any request a function makes to its Runtime API gets a
// Lambda status code, never a panic, and completes the current invocation
// only when it is a POST to that invocation's response or error. Requests
// go over a connection to the Runtime API's own server, so its parsing and
// body limit are in the loop.
func FuzzRuntimeAPI(f *testing.F) {
	f.Add("POST", "invocation/req-1/response", "", []byte(`{"ok":true}`))
	f.Add("POST", "invocation/req-1/error", "Boom", []byte(`{"errorType":"X"}`))
	f.Add("POST", "invocation/other/response", "", []byte(`x`))
	f.Add("GET", "invocation/next", "", []byte(nil))
	f.Add("POST", "init/error", "Init", []byte(`{}`))
	f.Add("PUT", "invocation/req-1/response", "", []byte(`x`))
	f.Add("POST", "invocation//response", "", []byte(`x`))
	f.Add("POST", "invocation/req-1/response/extra", "", []byte(`x`))
	f.Add("POST", "invocation/req-1/response", "", []byte(strings.Repeat("x", 2<<10)))
	f.Fuzz(func(t *testing.T, method, rest, errType string, body []byte) {
		if !validMethod(method) || strings.ContainsAny(rest, "?#% ") || !validHeader(rest) || !validHeader(errType) {
			return // not a request a client can send
		}
		s := &Server{cfg: Config{MaxResponseBytes: 1 << 10}}
		c := &container{s: s}
		p := &process{c: c, next: make(chan *invocation), ready: make(chan struct{}),
			initErr: make(chan struct{}), exited: make(chan struct{})}
		close(p.exited) // GET /next answers at once instead of waiting
		inv := &invocation{id: "req-1", done: make(chan outcome, 1)}
		p.cur.Store(inv)

		target := "http://127.0.0.1/2018-06-01/runtime/" + rest
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(method)
		req.SetRequestURI(target)
		if errType != "" {
			req.Header.Set(headerErrorType, errType)
		}
		req.SetBodyRaw(body)
		code := roundTrip(t, newAPIServer(p), req)
		// 502: a call (a path that normalises to the Invoke API) with no
		// agent connected.
		if !slices.Contains([]int{200, 202, 400, 404, 405, 413, 502}, code) {
			t.Fatalf("%s %s: status %d", method, rest, code)
		}
		var u fasthttp.URI // the path as the server sees it (decoded, normalised)
		if err := u.Parse(nil, []byte(target)); err != nil {
			t.Fatal(err)
		}
		path := string(u.Path())
		completing := method == "POST" && (path == apiPrefix+"invocation/req-1/response" || path == apiPrefix+"invocation/req-1/error")
		select {
		case o := <-inv.done:
			if !completing {
				t.Fatalf("%s %s completed the invocation: %+v", method, rest, o)
			}
			if code != 202 && code != 413 {
				t.Fatalf("completed with status %d", code)
			}
			if len(body) > 1<<10 && (code != 413 || o.errType != tooLargeErrType) {
				t.Fatalf("a body over the limit: status %d, %+v", code, o)
			}
		default:
			if completing && code == 202 {
				t.Fatalf("%s %s answered 202 without completing", method, rest)
			}
		}
	})
}

// roundTrip sends req to srv over an in-memory connection and returns the
// response's status.
func roundTrip(t *testing.T, srv *fasthttp.Server, req *fasthttp.Request) int {
	cc, sc := net.Pipe()
	defer cc.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeConn(sc)
	}()
	go func() {
		w := bufio.NewWriter(cc)
		if err := req.Write(w); err != nil || w.Flush() != nil {
			cc.Close() // the read below fails: the test's mistake, not the server's
		}
	}()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if err := resp.Read(bufio.NewReader(cc)); err != nil {
		t.Fatalf("%s %s: read response: %v", req.Header.Method(), req.URI().Path(), err)
	}
	cc.Close()
	<-done
	return resp.StatusCode()
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

func validHeader(v string) bool {
	for _, r := range v {
		if r < ' ' || r > '~' {
			return false
		}
	}
	return true
}
