package initd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-run/ember/hostagent/initd"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/shim"
	"github.com/ember-run/ember/internal/testenv"
	"github.com/rs/zerolog"
)

func init() {
	// As in cmd/ember-init: the main thread must never become a spawn thread.
	runtime.LockOSThread()
}

// exampleNames are the example functions under examples/.
var exampleNames = []string{"kafka-echo", "fail", "sleep", "exit", "whoami"}

// codeMount holds one built example per directory, shared by all tests.
var codeMount string

func TestMain(m *testing.M) {
	if shim.IsShim() { // the test binary is also the containers' shim
		shim.Run()
	}
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "initd tests need root (mount namespaces, setuid, cgroups)")
		return 1
	}
	base, err := os.MkdirTemp("", "initd-code-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(base)
	if err := os.Chmod(base, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	codeMount = base
	var wg sync.WaitGroup
	errs := make([]error, len(exampleNames))
	for i, name := range exampleNames {
		wg.Go(func() { errs[i] = testenv.Example(name, filepath.Join(base, name)) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// syncBuffer collects the server's forwarded container output.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

type env struct {
	srv    *initd.Server
	cfg    initd.Config
	output *syncBuffer
	// ended is closed when Run returns.
	ended chan struct{}
}

// startServer runs a Server in-process with private directories (world
// traversable, since the function runs as uid 1000) and stops it at cleanup.
func startServer(t testing.TB, tweak func(*initd.Config)) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "initd-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	cfg := initd.Config{
		InstanceID: "inst-test",
		SocketDir:  filepath.Join(dir, "sock"),
		CodeMount:  codeMount,
		TaskDir:    filepath.Join(dir, "task"),
		TmpDir:     filepath.Join(dir, "tmp"),
		StopGrace:  time.Second,
		Output:     out,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel)
	if _, ok := t.(*testing.B); ok {
		log = zerolog.Nop()
		cfg.Output = io.Discard
	}
	srv, err := initd.New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ended := make(chan struct{})
	go func() { done <- srv.Run(ctx); close(ended) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
		os.RemoveAll(dir)
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready")
	}
	return &env{srv: srv, cfg: cfg, output: out, ended: ended}
}

// client is a minimal agent side: it matches replies to requests by seq and
// queues events.
type client struct {
	t       testing.TB
	conn    *initproto.Conn
	hello   initproto.Hello
	wire    bool // Invoke and Result in the wire format
	seq     atomic.Uint32
	mu      sync.Mutex
	waiting map[uint32]chan *initproto.Frame
	events  chan *initproto.Frame
	closed  chan struct{}
}

// dial connects as the host agent does: with the wire format for Invoke
// and Result once Hello offers it.
func (e *env) dial(t testing.TB) *client {
	t.Helper()
	c := e.dialJSON(t)
	if c.hello.Wire {
		c.conn.UseWire()
		c.wire = true
	}
	return c
}

// dialJSON connects as an agent that predates the wire format.
func (e *env) dialJSON(t testing.TB) *client {
	t.Helper()
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: e.srv.SocketPath(), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, uc)
}

// newClient reads Hello from an established connection and starts the
// reply dispatcher (headers in JSON).
func newClient(t testing.TB, uc *net.UnixConn) *client {
	t.Helper()
	c := &client{
		t: t, conn: initproto.NewConn(uc),
		waiting: map[uint32]chan *initproto.Frame{},
		events:  make(chan *initproto.Frame, 64),
		closed:  make(chan struct{}),
	}
	f, err := c.conn.Read()
	if err != nil {
		t.Fatalf("read hello: %v", err)
	}
	if f.Type != initproto.TypeHello {
		t.Fatalf("first frame type %d, want hello", f.Type)
	}
	if err := f.Decode(&c.hello); err != nil {
		t.Fatal(err)
	}
	go c.readLoop()
	t.Cleanup(func() { c.conn.Close(); <-c.closed })
	return c
}

func (c *client) readLoop() {
	defer close(c.closed)
	for {
		f, err := c.conn.Read()
		if err != nil {
			return
		}
		if f.Seq == 0 {
			c.events <- f
			continue
		}
		c.mu.Lock()
		ch := c.waiting[f.Seq]
		delete(c.waiting, f.Seq)
		c.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	}
}

// call sends a request and waits for its reply.
func (c *client) call(t initproto.Type, header any, body []byte, fds ...int) (*initproto.Frame, error) {
	seq := c.seq.Add(1)
	ch := make(chan *initproto.Frame, 1)
	c.mu.Lock()
	c.waiting[seq] = ch
	c.mu.Unlock()
	if err := c.conn.Write(t, seq, header, body, fds...); err != nil {
		return nil, err
	}
	select {
	case f := <-ch:
		return f, nil
	case <-c.closed:
		return nil, fmt.Errorf("connection closed waiting for seq %d", seq)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("no reply to seq %d", seq)
	}
}

func (c *client) start(spec initproto.StartContainer, fds ...int) initproto.Started {
	c.t.Helper()
	f, err := c.call(initproto.TypeStart, spec, nil, fds...)
	if err != nil {
		c.t.Fatal(err)
	}
	var st initproto.Started
	if err := f.Decode(&st); err != nil {
		c.t.Fatal(err)
	}
	if f.Type != initproto.TypeStarted {
		c.t.Fatalf("reply type %d", f.Type)
	}
	return st
}

func (c *client) mustStart(spec initproto.StartContainer, fds ...int) initproto.Started {
	c.t.Helper()
	st := c.start(spec, fds...)
	if st.Error != "" || st.Pid <= 0 {
		c.t.Fatalf("start %s: %+v", spec.ContainerID, st)
	}
	return st
}

func (c *client) invoke(container, id string, timeout time.Duration, payload string) (initproto.Result, string) {
	c.t.Helper()
	req := initproto.Invoke{
		ID: id, ContainerID: container,
		DeadlineUnixMs: time.Now().Add(timeout).UnixMilli(),
		TraceID:        "Root=1-test",
	}
	f, err := c.call(initproto.TypeInvoke, req, []byte(payload))
	if err != nil {
		c.t.Fatal(err)
	}
	if f.Type != initproto.TypeResult {
		c.t.Fatalf("reply type %d", f.Type)
	}
	if f.Wire() != c.wire {
		c.t.Fatalf("result in the wire format: %v, the invoke's: %v", f.Wire(), c.wire)
	}
	var res initproto.Result
	if err := f.Decode(&res); err != nil {
		c.t.Fatal(err)
	}
	return res, string(f.Body)
}

func (c *client) stop(container string) {
	c.t.Helper()
	f, err := c.call(initproto.TypeStop, initproto.Stop{ContainerID: container, GraceMs: 500}, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if f.Type != initproto.TypeStopped {
		c.t.Fatalf("reply type %d", f.Type)
	}
}

// exited waits for the Exited event of container.
func (c *client) exited(container string) initproto.Exited {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case f := <-c.events:
			var ev initproto.Exited
			if f.Type != initproto.TypeExited {
				c.t.Fatalf("unexpected event type %d", f.Type)
			}
			if err := f.Decode(&ev); err != nil {
				c.t.Fatal(err)
			}
			if ev.ContainerID == container {
				return ev
			}
		case <-timeout:
			c.t.Fatalf("no Exited event for %s", container)
		}
	}
}

func spec(id, example string) initproto.StartContainer {
	return initproto.StartContainer{
		ContainerID: id, CodeDir: example, Handler: "bootstrap",
		FunctionName: example, Version: "1", MemoryMB: 128, TimeoutMs: 3000,
	}
}

func mustJSON(t testing.TB, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}
