package initd

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
	"golang.org/x/sys/unix"
)

// testProcess is a process with no program behind it, for driving its
// Runtime API directly; its current invocation is "req-1".
func testProcess() (*process, *invocation) {
	s := &Server{cfg: Config{MaxResponseBytes: 1 << 10}, containers: map[string]*container{}}
	c := &container{s: s, id: "c1"}
	p := &process{c: c, next: make(chan *invocation), ready: make(chan struct{}),
		initErr: make(chan struct{}), exited: make(chan struct{})}
	c.proc, s.containers[c.id] = p, c
	inv := &invocation{id: "req-1", done: make(chan outcome, 1)}
	p.cur.Store(inv)
	return p, inv
}

// connectAgent gives s an agent connection and returns the agent's end.
func connectAgent(t *testing.T, s *Server) *initproto.Conn {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *initproto.Conn {
		f := os.NewFile(uintptr(fd), "agent")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return initproto.NewConn(c.(*net.UnixConn))
	}
	s.conn = conn(fds[0])
	agent := conn(fds[1])
	t.Cleanup(func() { s.conn.Close(); agent.Close() })
	return agent
}

// serveAPI serves p's Runtime API on a loopback listener and returns its
// address.
func serveAPI(t *testing.T, p *process) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newAPIServer(p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		close(p.exited) // handlers waiting for an invocation return
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// send POSTs body to path of the API at addr, with header's fields set,
// and returns the status; edit changes the request before it goes.
func send(t *testing.T, addr, path string, body io.Reader, header map[string]string, edit ...func(*http.Request)) int {
	t.Helper()
	req, err := http.NewRequest("POST", "http://"+addr+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	for _, e := range edit {
		e(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestStreamedResponseTrailers: a response streamed in chunks that failed
// part way carries its error in trailers, as aws-lambda-go sends it (with
// net/http's client); the invocation is a function error with that type
// and document.
func TestStreamedResponseTrailers(t *testing.T) {
	p, inv := testProcess()
	addr := serveAPI(t, p)
	doc := `{"errorMessage":"stream broke","errorType":"StreamError"}`
	code := send(t, addr, apiPrefix+"invocation/req-1/response",
		io.MultiReader(strings.NewReader("partial"), strings.NewReader(" output")), nil, func(req *http.Request) {
			req.ContentLength = -1 // chunked
			req.Trailer = http.Header{
				trailerErrorType: {"StreamError"},
				trailerErrorBody: {base64.StdEncoding.EncodeToString([]byte(doc))},
			}
		})
	if code != http.StatusAccepted {
		t.Fatalf("status %d, want 202", code)
	}
	o := <-inv.done
	if o.status != "function_error" || o.errType != "StreamError" || string(o.body) != doc {
		t.Fatalf("outcome %+v (body %s); want function_error StreamError with the trailer's document", o, o.body)
	}
}

// TestNextAfterHangUp: a runtime that hangs up while it waits in GET /next
// (a client timeout) does not lose the invocation: its next GET /next
// gets it.
func TestNextAfterHangUp(t *testing.T) {
	p, _ := testProcess()
	p.cur.Store(nil)
	addr := serveAPI(t, p)
	first, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(first, "GET "+apiPrefix+"invocation/next HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-p.ready // the server waits for an invocation on first's request
	first.Close()
	inv := &invocation{id: "req-2", payload: []byte(`{"n":2}`), done: make(chan outcome, 1)}
	p.next <- inv // taken by the request of the connection that hung up

	client := &http.Client{Timeout: 10 * time.Second} // bounds the failure: the invocation lost
	resp, err := client.Get("http://" + addr + apiPrefix + "invocation/next")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(bufio.NewReader(resp.Body))
	resp.Body.Close()
	if got := resp.Header.Get(headerRequestID); got != "req-2" || string(body) != `{"n":2}` {
		t.Fatalf("next after a hang-up: request id %q, body %s; want req-2 and its payload", got, body)
	}
	if p.cur.Load() != inv {
		t.Fatal("the invocation is not the process's current one")
	}
}

// TestErrorWithLargeHeader: aws-lambda-go sends an error's X-Ray cause, up
// to 1 MiB, as a header of POST /error; the error is the function's.
func TestErrorWithLargeHeader(t *testing.T) {
	p, inv := testProcess()
	addr := serveAPI(t, p)
	doc := `{"errorMessage":"boom","errorType":"Boom"}`
	path := apiPrefix + "invocation/req-1/error"
	code := send(t, addr, path, strings.NewReader(doc),
		map[string]string{"Lambda-Runtime-Function-Xray-Error-Cause": strings.Repeat("x", 200<<10)})
	if code != http.StatusAccepted {
		t.Fatalf("status %d, want 202", code)
	}
	if o := <-inv.done; o.status != "function_error" || o.errType != "Boom" {
		t.Fatalf("outcome %+v, want the function's error", o)
	}
	// Past the bound: a clear status, not a dropped connection.
	// Past the bound: refused (431, or a reset if the server's close beats
	// its answer to the client); nothing completes, and the server goes on.
	p2, inv2 := testProcess()
	addr2 := serveAPI(t, p2)
	req, err := http.NewRequest("POST", "http://"+addr2+path, strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", strings.Repeat("x", maxHeaderBytes))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("headers over the bound: status %d, want 431", resp.StatusCode)
		}
	}
	if code := send(t, addr2, path, strings.NewReader(doc), nil); code != http.StatusAccepted {
		t.Fatalf("after headers over the bound: status %d, want 202", code)
	}
	if o := <-inv2.done; o.errType != "Boom" {
		t.Fatalf("outcome %+v, want the later request's error", o)
	}
}

// TestCallRetryAfterHangUp: one call at a time per invocation, but a
// caller that hung up (an SDK's timeout) does not keep its retry out; the
// retry gets its own call's result, not the first call's (which comes
// first here and is dropped); a result without a call id (an older agent)
// answers the call that waits.
func TestCallRetryAfterHangUp(t *testing.T) {
	p, _ := testProcess()
	agent := connectAgent(t, p.c.s)
	addr := serveAPI(t, p)
	const path = "/2015-03-31/functions/other/invocations"
	call := func() *http.Response {
		resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Error(err)
			return nil
		}
		return resp
	}
	frames := make(chan *initproto.Frame, 4)
	go func() {
		defer close(frames)
		for {
			f, err := agent.Read()
			if err != nil {
				return
			}
			frames <- f
		}
	}()
	got := make(chan *http.Response, 2)
	// awaitCall waits for the agent to get a call, failing if the call's
	// request was answered first.
	awaitCall := func() (c initproto.Call) {
		t.Helper()
		select {
		case f := <-frames:
			if f == nil || f.Type != initproto.TypeCall {
				t.Fatalf("agent: frame %+v; want a call", f)
			}
			if err := f.Decode(&c); err != nil {
				t.Fatal(err)
			}
		case resp := <-got:
			t.Fatalf("the call was answered without reaching the agent: %+v", resp)
		case <-time.After(10 * time.Second):
			t.Fatal("no call reached the agent")
		}
		return c
	}
	first, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(first, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
		t.Fatal(err)
	}
	firstCall := awaitCall() // first waits for its result
	if resp := call(); resp == nil || resp.StatusCode != http.StatusConflict {
		t.Fatalf("a second call while the first's caller waits: %+v, want 409", resp)
	}
	first.Close()
	go func() { got <- call() }()
	retry := awaitCall() // the retry took the call's place
	if retry.CallID == firstCall.CallID {
		t.Fatalf("the retry has the first call's id %d", retry.CallID)
	}
	// answer sends a call's result as the agent does; answered waits for
	// the waiting call's HTTP answer.
	answer := func(id uint64, body string) {
		h, _ := json.Marshal(initproto.CallResult{InvocationID: "req-1", ContainerID: "c1", CallID: id, Status: initproto.StatusOK})
		p.c.s.handleCallResult(&initproto.Frame{Type: initproto.TypeCallResult, Header: h, Body: []byte(body)})
	}
	answered := func(what string) (int, string) {
		t.Helper()
		var resp *http.Response
		select {
		case resp = <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer", what)
		}
		if resp == nil {
			t.FailNow()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	answer(firstCall.CallID, `"first"`)
	answer(retry.CallID, `"done"`)
	if code, body := answered("the retry"); code != http.StatusOK || body != `"done"` {
		t.Fatalf("the retry: status %d, body %s; want 200 with the result", code, body)
	}

	// An agent of before call ids (rolled back over this instance) sends
	// none: its result answers the call that waits.
	go func() { got <- call() }()
	awaitCall()
	answer(0, `"old"`)
	if _, body := answered("a result without a call id"); body != `"old"` {
		t.Fatalf("a result without a call id: body %s, want \"old\"", body)
	}
}

// TestErrorTypeHeaderOnResponse: the error type counts on POST /response
// only as a trailer (a streamed response that failed); as a header it is
// not one, as with net/http's server before.
func TestErrorTypeHeaderOnResponse(t *testing.T) {
	p, inv := testProcess()
	addr := serveAPI(t, p)
	send(t, addr, apiPrefix+"invocation/req-1/response", strings.NewReader(`{"ok":1}`), map[string]string{headerErrorType: "NotAnError"})
	if o := <-inv.done; o.status != "ok" || string(o.body) != `{"ok":1}` {
		t.Fatalf("outcome %+v (body %s), want ok", o, o.body)
	}
}
