package hostagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/hostagent/initproto"
)

// errInitGone means the connection to an instance's ember-init broke: the
// instance is lost.
var errInitGone = errors.New("ember-init connection lost")

// initClient is the agent's side of one instance's initproto connection.
// Requests may be in flight concurrently; replies are matched by seq. One
// goroutine (started by dialInit, waited for by close) reads frames.
type initClient struct {
	conn  *initproto.Conn
	hello initproto.Hello

	seq     atomic.Uint32
	mu      sync.Mutex
	pending map[uint32]chan *initproto.Frame
	// calls routes TypeCall events to the invocation they are made for
	// (park.go), by invocation id.
	calls map[string]chan callFrame
	err   error // set once, when the read loop ends

	dead   chan struct{} // closed when the read loop ends
	events initEvents
}

// initEvents handle ember-init's events on one connection (in the read
// loop: they must be quick).
type initEvents struct {
	exited func(initproto.Exited)
	ready  func(initproto.Ready)
}

// dialInit connects to ember-init's socket at path, retrying while the
// socket does not exist or refuses (the instance is still booting) until ctx
// is done, and waits for Hello from wantID. Without booting, an instance
// that should be running, it tries once.
func dialInit(ctx context.Context, path, wantID string, booting bool, events initEvents) (*initClient, error) {
	var uc *net.UnixConn
	var watch *dirWatch // made at the first failed dial
	defer func() {
		if watch != nil {
			watch.close()
		}
	}()
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			uc = c.(*net.UnixConn)
			break
		}
		if !booting || !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ECONNREFUSED) {
			return nil, fmt.Errorf("dial ember-init %s: %w", path, err)
		}
		if watch == nil { // watched from now: dialled again at once, then at each new name
			if watch, _ = watchDir(filepath.Dir(path)); watch == nil {
				watch = &dirWatch{} // no inotify (the instances' limit reached): the bound alone
			}
			continue
		}
		if werr := watch.wait(ctx, socketRetry); werr != nil {
			return nil, fmt.Errorf("dial ember-init %s: %w (last: %v)", path, werr, err)
		}
	}
	conn := initproto.NewConn(uc)
	// Read Hello under ctx: close the connection if ctx ends first.
	stop := context.AfterFunc(ctx, func() { _ = uc.Close() })
	f, err := conn.Read()
	if !stop() {
		_ = uc.Close()
		return nil, fmt.Errorf("ember-init %s: no hello: %w", path, ctx.Err())
	}
	if err != nil {
		_ = uc.Close()
		return nil, fmt.Errorf("ember-init %s: read hello: %w", path, err)
	}
	closeFDs(f.FDs)
	var h initproto.Hello
	if f.Type != initproto.TypeHello {
		_ = uc.Close()
		return nil, fmt.Errorf("ember-init %s: first frame is type %d, want hello", path, f.Type)
	}
	if err := f.Decode(&h); err != nil {
		_ = uc.Close()
		return nil, err
	}
	if wantID != "" && h.InstanceID != wantID {
		_ = uc.Close()
		return nil, fmt.Errorf("ember-init %s: hello from instance %q, want %q", path, h.InstanceID, wantID)
	}
	if h.Wire {
		conn.UseWire()
	}
	c := &initClient{
		conn: conn, hello: h,
		pending: map[uint32]chan *initproto.Frame{},
		calls:   map[string]chan callFrame{},
		dead:    make(chan struct{}),
		events:  events,
	}
	go c.readLoop()
	return c, nil
}

func closeFDs(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

func (c *initClient) readLoop() {
	var err error
	for {
		var f *initproto.Frame
		f, err = c.conn.Read()
		if err != nil {
			break
		}
		switch f.Type {
		case initproto.TypeExited:
			closeFDs(f.FDs)
			var ev initproto.Exited
			if f.Decode(&ev) == nil && c.events.exited != nil {
				c.events.exited(ev)
			}
			continue
		case initproto.TypeReady:
			closeFDs(f.FDs)
			var ev initproto.Ready
			if f.Decode(&ev) == nil && c.events.ready != nil {
				c.events.ready(ev)
			}
			continue
		}
		if f.Type == initproto.TypeCall {
			c.routeCall(f)
			continue
		}
		c.mu.Lock()
		ch := c.pending[f.Seq]
		delete(c.pending, f.Seq)
		c.mu.Unlock()
		if ch != nil {
			ch <- f // buffered; the caller owns f.FDs
		} else {
			closeFDs(f.FDs)
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("%w: %v", errInitGone, err)
	c.pending = nil
	c.mu.Unlock()
	close(c.dead)
}

// Dead is closed when the connection is gone.
func (c *initClient) Dead() <-chan struct{} { return c.dead }

// close closes the connection and waits for the read loop.
func (c *initClient) close() {
	_ = c.conn.Close()
	<-c.dead
}

// call sends one request and waits for the reply of type want.
func (c *initClient) call(ctx context.Context, t initproto.Type, hdr any, body []byte, fds []int, want initproto.Type) (*initproto.Frame, error) {
	seq, ch, err := c.send(t, hdr, body, fds)
	if err != nil {
		return nil, err
	}
	f, _, err := c.await(ctx, seq, ch, t, want, nil)
	return f, err
}

// send writes one request; its reply arrives on ch.
func (c *initClient) send(t initproto.Type, hdr any, body []byte, fds []int) (uint32, chan *initproto.Frame, error) {
	seq := c.seq.Add(1)
	if seq == 0 { // 0 is for events
		seq = c.seq.Add(1)
	}
	ch := make(chan *initproto.Frame, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.err
		c.mu.Unlock()
		return 0, nil, err
	}
	c.pending[seq] = ch
	c.mu.Unlock()
	if err := c.conn.Write(t, seq, hdr, body, fds...); err != nil {
		c.forget(seq)
		if errors.Is(err, initproto.ErrFrameTooLarge) { // nothing was sent: the instance is fine
			return 0, nil, status.Error(codes.InvalidArgument, err.Error())
		}
		return 0, nil, fmt.Errorf("%w: %v", errInitGone, err)
	}
	return seq, ch, nil
}

func (c *initClient) forget(seq uint32) {
	c.mu.Lock()
	if c.pending != nil {
		delete(c.pending, seq)
	}
	c.mu.Unlock()
}

// await waits for request seq's reply of type want (sent as type t). A
// frame on calls ends the wait first: it is returned and the request stays
// pending.
func (c *initClient) await(ctx context.Context, seq uint32, ch chan *initproto.Frame, t, want initproto.Type, calls <-chan callFrame) (*initproto.Frame, *callFrame, error) {
	check := func(f *initproto.Frame) (*initproto.Frame, *callFrame, error) {
		if f.Type != want {
			closeFDs(f.FDs)
			return nil, nil, fmt.Errorf("ember-init replied type %d to type %d, want %d", f.Type, t, want)
		}
		return f, nil, nil
	}
	select {
	case f := <-ch:
		return check(f)
	case cf := <-calls:
		return nil, &cf, nil
	case <-c.dead:
		select {
		case f := <-ch: // the reply raced the close
			return check(f)
		default:
		}
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		return nil, nil, err
	case <-ctx.Done():
		c.forget(seq)
		select {
		case f := <-ch: // the reply came already (or raced the cancellation): it stands
			return check(f)
		default:
		}
		return nil, nil, ctx.Err()
	}
}

// start starts a container. It returns the fd of the container's network
// namespace (-1 if ember-init sent none), which the caller must close.
func (c *initClient) start(ctx context.Context, sc initproto.StartContainer, fds []int) (initproto.Started, int, error) {
	f, err := c.call(ctx, initproto.TypeStart, sc, nil, fds, initproto.TypeStarted)
	if err != nil {
		return initproto.Started{}, -1, err
	}
	var s initproto.Started
	if err := f.Decode(&s); err != nil {
		closeFDs(f.FDs)
		return s, -1, err
	}
	netns := -1
	for i, fd := range f.FDs {
		if i < len(s.FDNames) && s.FDNames[i] == initproto.FDNetns && netns < 0 {
			netns = fd
			continue
		}
		_ = unix.Close(fd)
	}
	return s, netns, nil
}

func (c *initClient) stop(ctx context.Context, containerID string, grace time.Duration) error {
	_, err := c.call(ctx, initproto.TypeStop, initproto.Stop{ContainerID: containerID, GraceMs: grace.Milliseconds()}, nil, nil, initproto.TypeStopped)
	return err
}

// configureLogs sends the instance's logging service (with its
// credentials) and waits for ember-init to take it.
func (c *initClient) configureLogs(ctx context.Context, cfg initproto.LogConfig) error {
	f, err := c.call(ctx, initproto.TypeLogConfig, cfg, nil, nil, initproto.TypeLogConfigured)
	if err != nil {
		return err
	}
	var r initproto.LogConfigured
	if err := f.Decode(&r); err != nil {
		return err
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}

// report sends an invocation's REPORT for its logging service; no reply.
func (c *initClient) report(r initproto.Report) error {
	return c.conn.Write(initproto.TypeReport, 0, r, nil)
}

// callFrame is a TypeCall event: what a function asked to run.
type callFrame struct {
	call    initproto.Call
	payload []byte
}

// routeCall hands a TypeCall event to the dispatch waiting on its
// invocation; a call no dispatch waits for is refused at once.
func (c *initClient) routeCall(f *initproto.Frame) {
	closeFDs(f.FDs)
	var cl initproto.Call
	if err := f.Decode(&cl); err != nil {
		return
	}
	c.mu.Lock()
	ch := c.calls[cl.InvocationID]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- callFrame{cl, f.Body}:
			return
		default: // one call at a time: ember-init refuses a second
		}
	}
	_ = c.callResult(initproto.CallResult{InvocationID: cl.InvocationID, ContainerID: cl.ContainerID, CallID: cl.CallID,
		Error: "no dispatch waits for this invocation here"}, nil)
}

// callResult sends a call's result to ember-init (an event: no reply). A
// result too large for a frame goes as an error.
func (c *initClient) callResult(r initproto.CallResult, body []byte) error {
	err := c.conn.Write(initproto.TypeCallResult, 0, r, body)
	if errors.Is(err, initproto.ErrFrameTooLarge) {
		r.Status, r.ErrorType, r.Error = "", "", fmt.Sprintf("the call's result (%d bytes) is too large", len(body))
		err = c.conn.Write(initproto.TypeCallResult, 0, r, nil)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", errInitGone, err)
	}
	return nil
}

// pendingInvoke is an Invoke sent whose Result has not come yet.
type pendingInvoke struct {
	c     *initClient
	id    string
	seq   uint32
	reply chan *initproto.Frame
	calls chan callFrame
}

// startInvoke sends an Invoke; wait returns its Result or a call the
// function makes first.
func (c *initClient) startInvoke(inv initproto.Invoke, payload []byte) (*pendingInvoke, error) {
	p := &pendingInvoke{c: c, id: inv.ID, calls: make(chan callFrame, 1)}
	c.mu.Lock()
	c.calls[inv.ID] = p.calls
	c.mu.Unlock()
	seq, ch, err := c.send(initproto.TypeInvoke, inv, payload, nil)
	if err != nil {
		p.done()
		return nil, err
	}
	p.seq, p.reply = seq, ch
	return p, nil
}

// wait waits for the Result, or for a call: then the Invoke stays pending
// and wait is called again once the call's result went to ember-init.
func (p *pendingInvoke) wait(ctx context.Context) (initproto.Result, []byte, *callFrame, error) {
	f, cf, err := p.c.await(ctx, p.seq, p.reply, initproto.TypeInvoke, initproto.TypeResult, p.calls)
	if cf != nil {
		return initproto.Result{}, nil, cf, nil
	}
	p.done()
	if err != nil {
		return initproto.Result{}, nil, nil, err
	}
	var r initproto.Result
	if err := f.Decode(&r); err != nil {
		return r, nil, nil, err
	}
	return r, f.Body, nil, nil
}

// done stops routing calls to p.
func (p *pendingInvoke) done() {
	p.c.mu.Lock()
	if p.c.calls[p.id] == p.calls {
		delete(p.c.calls, p.id)
	}
	p.c.mu.Unlock()
}
