package initd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/netns"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Server is ember-init's core: it serves the agent socket and runs
// containers. Create it with New and run it with Run.
type Server struct {
	cfg    Config
	log    zerolog.Logger
	waiter waiter
	ready  chan struct{}

	mu         sync.Mutex
	containers map[string]*container
	// spares are network namespaces set aside (TypeNetns) by connection,
	// by id, until a container takes one or the connection ends.
	spares map[*initproto.Conn]map[string]int

	uidMu sync.Mutex
	uids  map[int]bool // in use by a container

	connMu sync.Mutex
	conn   *initproto.Conn // the current agent connection, nil if none
	// orphan runs while no agent is connected (Config.OrphanTimeout).
	orphan *time.Timer

	logMu  sync.Mutex
	logSvc *logService // the instance's logging service, nil if none

	calls atomic.Uint64 // the last Call's CallID

	// wg owns request handlers and per-process goroutines.
	wg sync.WaitGroup
}

// New validates cfg (applying its defaults) and returns a Server.
func New(cfg Config, log zerolog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{
		cfg:        cfg,
		log:        log.With().Str("component", "initd").Logger(),
		ready:      make(chan struct{}),
		containers: make(map[string]*container),
		spares:     make(map[*initproto.Conn]map[string]int),
		uids:       make(map[int]bool),
	}
	if cfg.ReapAll {
		s.waiter = newAllReaper(s.log)
	} else {
		s.waiter = &pidWaiter{}
	}
	return s, nil
}

// SocketPath is where the agent connects.
func (s *Server) SocketPath() string {
	return filepath.Join(s.cfg.SocketDir, initproto.SocketName)
}

// Ready is closed once the agent socket accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Run serves until ctx is done, then stops every container (SIGTERM, the
// configured StopGrace, SIGKILL), waits for all its goroutines and returns.
// It returns an error only if the socket cannot be served.
func (s *Server) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.SocketDir, 0o755); err != nil {
		return fmt.Errorf("initd: socket dir: %w", err)
	}
	path := s.SocketPath()
	ln, err := listenThenRename(path)
	if err != nil {
		return err
	}
	close(s.ready)
	s.log.Info().Str("socket", path).Msg("listening")

	waitCtx, stopWaiter := context.WithCancel(context.Background())
	defer stopWaiter()
	waitDone := make(chan error, 1)
	go func() { waitDone <- s.waiter.run(waitCtx) }()

	ctx, orphaned := context.WithCancel(ctx)
	defer orphaned()
	if d := s.cfg.OrphanTimeout; d > 0 {
		s.connMu.Lock()
		s.orphan = time.AfterFunc(d, func() {
			s.connMu.Lock()
			connected := s.conn != nil // an agent came as the timer fired
			s.connMu.Unlock()
			if connected || ctx.Err() != nil {
				return
			}
			s.log.Warn().Dur("orphan_timeout", d).Msg("no agent connected for the orphan timeout: stopping the instance")
			orphaned()
		})
		s.connMu.Unlock()
		defer s.orphan.Stop()
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		<-gctx.Done()
		_ = os.Remove(path) // gone as it stops accepting
		return ln.Close()
	})
	g.Go(func() error { return s.accept(gctx, ln) })
	err = g.Wait()

	s.shutdown()
	stopWaiter()
	if werr := <-waitDone; err == nil {
		err = werr
	}
	return err
}

// listenThenRename listens on a temporary name beside path and renames it
// to path: the socket appears under its name only once it accepts, so the
// agent, which watches the directory while an instance boots, connects when
// it sees the name (a socket bound in place would show before listen).
func listenThenRename(path string) (*net.UnixListener, error) {
	tmp := path + ".new"
	for _, p := range []string{path, tmp} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("initd: remove stale socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("initd: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false) // it is removed under its final name
	if err := os.Rename(tmp, path); err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("initd: socket: %w", err)
	}
	return ln, nil
}

func (s *Server) accept(ctx context.Context, ln *net.UnixListener) error {
	for {
		uc, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("initd: accept: %w", err)
		}
		c := initproto.NewConn(uc)
		s.connMu.Lock()
		old := s.conn
		s.conn = c
		if s.orphan != nil {
			s.orphan.Stop()
		}
		s.connMu.Unlock()
		if old != nil {
			s.log.Info().Msg("new agent connection replaces the previous one")
			_ = old.Close()
		}
		s.wg.Go(func() { s.serveConn(ctx, c) })
	}
}

// shutdown closes the agent connection, stops all containers and waits for
// every goroutine the server started.
func (s *Server) shutdown() {
	s.connMu.Lock()
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
	s.connMu.Unlock()
	s.mu.Lock()
	all := make([]*container, 0, len(s.containers))
	for _, c := range s.containers {
		all = append(all, c)
	}
	s.containers = map[string]*container{}
	conns := make([]*initproto.Conn, 0, len(s.spares))
	for c := range s.spares {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		s.dropSpares(c)
	}
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Go(func() { c.stop(s.cfg.StopGrace) })
	}
	wg.Wait()
	// The containers' last lines go to the logging service, briefly: the
	// instance is going away.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	s.closeLogService(ctx)
	cancel()
	s.wg.Wait()
}

// serveConn reads requests from one agent connection until it fails. Each
// request runs on its own goroutine and is answered on this connection.
func (s *Server) serveConn(ctx context.Context, c *initproto.Conn) {
	defer func() {
		s.connMu.Lock()
		if s.conn == c {
			s.conn = nil
			if s.orphan != nil {
				s.orphan.Reset(s.cfg.OrphanTimeout)
			}
		}
		s.connMu.Unlock()
		s.dropSpares(c)
		_ = c.Close()
	}()
	hello := initproto.Hello{InstanceID: s.cfg.InstanceID, Pid: os.Getpid(), Version: s.cfg.Version, Containers: s.containerIDs(), Wire: true, Ready: true}
	if err := c.Write(initproto.TypeHello, 0, hello, nil); err != nil {
		s.log.Warn().Err(err).Msg("send hello")
		return
	}
	for {
		f, err := c.Read()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Info().Err(err).Msg("agent connection ended")
			}
			return
		}
		for _, fd := range f.FDs {
			unix.CloseOnExec(fd)
		}
		if f.Wire() {
			c.UseWire() // this agent reads it: answer in it
		}
		switch f.Type {
		case initproto.TypeNetns:
			s.wg.Go(func() {
				res, fd := s.handleNetns(c, f)
				if fd < 0 {
					s.reply(c, initproto.TypeNetnsReady, f.Seq, res, nil)
					return
				}
				s.reply(c, initproto.TypeNetnsReady, f.Seq, res, nil, fd)
				_ = unix.Close(fd) // the connection's map keeps its own
			})
		case initproto.TypeStart:
			s.wg.Go(func() {
				st, fds := s.handleStart(c, f)
				s.reply(c, initproto.TypeStarted, f.Seq, st, nil, fds...)
			})
		case initproto.TypeInvoke:
			s.wg.Go(func() {
				res, body := s.handleInvoke(ctx, f)
				s.reply(c, initproto.TypeResult, f.Seq, res, body)
			})
		case initproto.TypeStop:
			s.wg.Go(func() { s.reply(c, initproto.TypeStopped, f.Seq, s.handleStop(f), nil) })
		case initproto.TypeLogConfig:
			s.wg.Go(func() { s.reply(c, initproto.TypeLogConfigured, f.Seq, s.handleLogConfig(f), nil) })
		case initproto.TypeReport:
			s.handleReport(f) // never blocks: the shipper buffers or drops
		case initproto.TypeCallResult:
			s.handleCallResult(f) // never blocks
		default:
			closeAll(f.FDs)
			s.log.Warn().Uint8("type", uint8(f.Type)).Uint32("seq", f.Seq).Msg("unexpected frame type")
		}
	}
}

// containerIDs lists the containers held, sorted.
func (s *Server) containerIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.containers))
	for id := range s.containers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *Server) reply(c *initproto.Conn, t initproto.Type, seq uint32, header any, body []byte, fds ...int) {
	if err := c.Write(t, seq, header, body, fds...); err != nil {
		s.log.Debug().Err(err).Uint32("seq", seq).Msg("reply lost with its connection")
	}
}

// event sends an event on the current agent connection, if any.
func (s *Server) event(t initproto.Type, header any) { s.eventBody(t, header, nil) }

// eventBody sends an event with a body on the current agent connection and
// reports whether it was written.
func (s *Server) eventBody(t initproto.Type, header any, body []byte) bool {
	s.connMu.Lock()
	c := s.conn
	s.connMu.Unlock()
	if c == nil {
		return false
	}
	if err := c.Write(t, 0, header, body); err != nil {
		s.log.Debug().Err(err).Msg("event lost with its connection")
		return false
	}
	return true
}

// handleStart creates (or finds) the container and, unless DeferSpawn is
// set, makes sure a process runs. The reply carries the container's
// network namespace (an fd the caller must not close: Write sends a copy).
func (s *Server) handleStart(conn *initproto.Conn, f *initproto.Frame) (initproto.Started, []int) {
	var req initproto.StartContainer
	if err := f.Decode(&req); err != nil {
		closeAll(f.FDs)
		return initproto.Started{Error: err.Error()}, nil
	}
	out := initproto.Started{ContainerID: req.ContainerID}
	s.mu.Lock()
	c, ok := s.containers[req.ContainerID]
	if !ok {
		var err error
		c, err = newContainer(s, conn, req, f.FDs)
		if err != nil {
			s.mu.Unlock()
			closeAll(f.FDs)
			out.Error = err.Error()
			return out, nil
		}
		s.containers[req.ContainerID] = c
	} else {
		closeAll(f.FDs) // a repeat Start keeps the original spec and fds
	}
	s.mu.Unlock()

	if !req.DeferSpawn {
		p, err := c.ensureProcess()
		if err != nil {
			if !ok {
				s.forget(c)
				c.mu.Lock()
				c.release()
				c.mu.Unlock()
			}
			out.Error = err.Error()
			return out, nil
		}
		out.Pid = p.pid
		if req.Preload {
			p.ahead.Store(true)
			if err := p.awaitReady(preloadReady); err != nil {
				out.Error = err.Error()
				return out, nil
			}
		}
	}
	out.UID = c.uid
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.netnsFD < 0 {
		return out, nil
	}
	out.FDNames = []string{initproto.FDNetns}
	return out, []int{c.netnsFD}
}

func (s *Server) handleInvoke(ctx context.Context, f *initproto.Frame) (initproto.Result, []byte) {
	closeAll(f.FDs)
	var req initproto.Invoke
	if err := f.Decode(&req); err != nil {
		return initproto.Result{Error: err.Error()}, nil
	}
	s.mu.Lock()
	c := s.containers[req.ContainerID]
	s.mu.Unlock()
	if c == nil {
		return initproto.Result{ID: req.ID, Error: fmt.Sprintf("container %q: %v", req.ContainerID, errNotFound)}, nil
	}
	return c.invoke(ctx, req, f.Body)
}

func (s *Server) handleStop(f *initproto.Frame) initproto.Stopped {
	closeAll(f.FDs)
	var req initproto.Stop
	if err := f.Decode(&req); err != nil {
		s.log.Warn().Err(err).Msg("malformed stop")
		return initproto.Stopped{}
	}
	s.mu.Lock()
	c := s.containers[req.ContainerID]
	s.mu.Unlock()
	if c != nil {
		grace := s.cfg.StopGrace
		if req.GraceMs > 0 {
			grace = msDuration(req.GraceMs)
		}
		s.forget(c)
		c.stop(grace)
	}
	return initproto.Stopped{ContainerID: req.ContainerID}
}

// allocUID returns the lowest uid from Config.UID up that no container
// uses.
func (s *Server) allocUID() (int, error) {
	s.uidMu.Lock()
	defer s.uidMu.Unlock()
	for uid := s.cfg.UID; uid < s.cfg.UID+MaxContainers; uid++ {
		if !s.uids[uid] {
			s.uids[uid] = true
			return uid, nil
		}
	}
	return 0, fmt.Errorf("all %d container uids are in use: %w", MaxContainers, errInvalid)
}

func (s *Server) freeUID(uid int) {
	s.uidMu.Lock()
	delete(s.uids, uid)
	s.uidMu.Unlock()
}

// forget removes c from the table if it is still there.
func (s *Server) forget(c *container) {
	s.mu.Lock()
	if s.containers[c.id] == c {
		delete(s.containers, c.id)
	}
	s.mu.Unlock()
}

func closeAll(fds []int) {
	for _, fd := range fds {
		_ = unix.Close(fd)
	}
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// handleNetns sets a network namespace aside for conn under the request's
// id, made here or, for Adopt, the one the request carries, and returns it
// (an fd the caller closes once sent; -1 for Adopt, Release or an error,
// with the reply's Error set). It closes the frame's other fds.
func (s *Server) handleNetns(conn *initproto.Conn, f *initproto.Frame) (initproto.Netns, int) {
	fds := f.FDs
	defer func() { closeAll(fds) }()
	var req initproto.Netns
	if err := f.Decode(&req); err != nil {
		return initproto.Netns{Error: err.Error()}, -1
	}
	out := initproto.Netns{ID: req.ID, Release: req.Release, Adopt: req.Adopt}
	if req.ID == "" {
		out.Error = "empty network namespace id"
		return out, -1
	}
	if req.Release {
		s.mu.Lock()
		fd, ok := s.takeSpareLocked(conn, req.ID)
		s.mu.Unlock()
		if ok {
			_ = unix.Close(fd)
		}
		return out, -1
	}
	var fd, dup int
	if req.Adopt {
		if len(fds) != 1 {
			out.Error = fmt.Sprintf("adopt: want one network namespace, got %d fds", len(fds))
			return out, -1
		}
		if err := netns.CheckOurs(fds[0]); err != nil {
			out.Error = "adopt: " + err.Error()
			return out, -1
		}
		fd, dup, fds = fds[0], -1, nil
	} else {
		var err error
		if fd, err = netns.New(); err != nil {
			out.Error = err.Error()
			return out, -1
		}
		if dup, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0); err != nil {
			_ = unix.Close(fd)
			out.Error = "duplicate network namespace fd: " + err.Error()
			return out, -1
		}
	}
	s.mu.Lock()
	// A connection that ended dropped its spares (dropSpares, after it
	// stopped being the current one): none may be added for it after.
	s.connMu.Lock()
	current := s.conn == conn
	s.connMu.Unlock()
	if !current {
		s.mu.Unlock()
		_ = unix.Close(fd)
		if dup >= 0 {
			_ = unix.Close(dup)
		}
		out.Error = "the connection ended"
		return out, -1
	}
	m := s.spares[conn]
	if m == nil {
		m = map[string]int{}
		s.spares[conn] = m
	}
	if old, ok := m[req.ID]; ok {
		_ = unix.Close(old)
	}
	m[req.ID] = fd
	s.mu.Unlock()
	return out, dup
}

// takeSpareLocked removes and returns conn's namespace set aside as id. s.mu held.
func (s *Server) takeSpareLocked(conn *initproto.Conn, id string) (int, bool) {
	fd, ok := s.spares[conn][id]
	if ok {
		delete(s.spares[conn], id)
	}
	return fd, ok
}

// dropSpares closes the namespaces conn set aside and did not use.
func (s *Server) dropSpares(conn *initproto.Conn) {
	s.mu.Lock()
	m := s.spares[conn]
	delete(s.spares, conn)
	s.mu.Unlock()
	for _, fd := range m {
		_ = unix.Close(fd)
	}
}
