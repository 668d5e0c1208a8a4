package initd

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testProcess is a process with no program behind it, for driving its
// Runtime API directly; its current invocation is "req-1".
func testProcess() (*process, *invocation) {
	s := &Server{cfg: Config{MaxResponseBytes: 1 << 10}}
	p := &process{c: &container{s: s}, next: make(chan *invocation), ready: make(chan struct{}),
		initErr: make(chan struct{}), exited: make(chan struct{})}
	inv := &invocation{id: "req-1", done: make(chan outcome, 1)}
	p.cur.Store(inv)
	return p, inv
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

// TestStreamedResponseTrailers: a response streamed in chunks that failed
// part way carries its error in trailers, as aws-lambda-go sends it (with
// net/http's client); the invocation is a function error with that type
// and document.
func TestStreamedResponseTrailers(t *testing.T) {
	p, inv := testProcess()
	addr := serveAPI(t, p)
	doc := `{"errorMessage":"stream broke","errorType":"StreamError"}`
	req, err := http.NewRequest("POST", "http://"+addr+apiPrefix+"invocation/req-1/response",
		io.MultiReader(strings.NewReader("partial"), strings.NewReader(" output")))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = -1 // chunked
	req.Trailer = http.Header{
		trailerErrorType: {"StreamError"},
		trailerErrorBody: {base64.StdEncoding.EncodeToString([]byte(doc))},
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202", resp.StatusCode)
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
