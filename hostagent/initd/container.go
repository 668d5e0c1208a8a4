package initd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/logship"
	"github.com/ember-run/ember/hostagent/netns"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/hostagent/shim"
)

// container is one function version's process tree. Its spec and cgroup fds
// are kept for its whole life, so a process that exits (crash, timeout kill,
// init failure) is replaced by a fresh one on the next Invoke.
type container struct {
	s    *Server
	log  zerolog.Logger
	id   string
	spec initproto.StartContainer
	// uid runs the container's processes: its own, no other container's.
	uid int
	// netnsFD holds the container's network namespace for its whole life.
	netnsFD int
	// envBase is the child's environment without AWS_LAMBDA_RUNTIME_API.
	envBase   []string
	tasksFDs  []int
	cgroup2FD int
	logs      *logSink
	// slot admits one invocation at a time, as Lambda runs one per container.
	slot chan struct{}

	mu      sync.Mutex
	proc    *process // the live process, nil when none
	stopped bool
	// logRes describes the container to logSvc (under mu).
	logRes *logship.Resource
	logSvc *logService
}

// logResource is the container as a record's resource for svc.
func (c *container) logResource(svc *logService) *logship.Resource {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.logSvc != svc {
		stream := c.spec.LogStream
		if stream == "" {
			stream = c.id
		}
		c.logSvc = svc
		c.logRes = &logship.Resource{Tenant: svc.tenant, Instance: svc.instance,
			Function: c.spec.FunctionName, Version: c.spec.Version, Stream: stream}
	}
	return c.logRes
}

// newContainer makes the container spec describes; s.mu held. Its network
// namespace is new, or the one conn set aside as spec.Netns.
func newContainer(s *Server, conn *initproto.Conn, spec initproto.StartContainer, fds []int) (*container, error) {
	c := &container{
		s:         s,
		log:       s.log.With().Str("container", spec.ContainerID).Logger(),
		id:        spec.ContainerID,
		spec:      spec,
		uid:       -1,
		netnsFD:   -1,
		cgroup2FD: -1,
		logs:      newLogSink(spec.ContainerID, s.cfg.LogRingBytes, s.cfg.MaxInvocationLogBytes, s.cfg.Output),
		slot:      make(chan struct{}, 1),
	}
	if len(fds) != len(spec.FDNames) {
		return nil, fmt.Errorf("%d fds for %d fd names: %w", len(fds), len(spec.FDNames), errInvalid)
	}
	for i, name := range spec.FDNames {
		switch {
		case name == initproto.FDCgroup2:
			c.cgroup2FD = fds[i]
		case strings.HasPrefix(name, initproto.FDTasksPrefix):
			c.tasksFDs = append(c.tasksFDs, fds[i])
		default:
			return nil, fmt.Errorf("unknown fd name %q: %w", name, errInvalid)
		}
	}
	if spec.ContainerID == "" {
		return nil, fmt.Errorf("empty container id: %w", errInvalid)
	}
	if !filepath.IsLocal(spec.CodeDir) {
		return nil, fmt.Errorf("code dir %q is not a local path: %w", spec.CodeDir, errInvalid)
	}
	for _, m := range spec.State {
		if !filepath.IsLocal(m.Dir) || strings.Contains(m.Dir, "/") || m.Dir == "." || filepath.Dir(m.Path) != initproto.StateMountParent ||
			filepath.Clean(m.Path) != m.Path {
			return nil, fmt.Errorf("state mount %q at %q: want a name and %s/<dir>: %w", m.Dir, m.Path, initproto.StateMountParent, errInvalid)
		}
	}
	c.envBase = buildEnv(s.cfg, spec)
	uid, err := s.allocUID()
	if err != nil {
		return nil, err
	}
	c.uid = uid
	if spec.Netns != "" {
		fd, ok := s.takeSpareLocked(conn, spec.Netns)
		if !ok {
			s.freeUID(uid)
			return nil, fmt.Errorf("no network namespace set aside as %q: %w", spec.Netns, errInvalid)
		}
		c.netnsFD = fd
		return c, nil
	}
	if c.netnsFD, err = netns.New(); err != nil {
		s.freeUID(uid)
		return nil, err
	}
	return c, nil
}

// buildEnv is the Lambda "provided" runtime environment. The function's Env
// may override anything but AWS_LAMBDA_RUNTIME_API, which is appended per
// process.
func buildEnv(cfg Config, spec initproto.StartContainer) []string {
	m := map[string]string{
		"PATH":                            "/usr/local/bin:/usr/bin:/bin:" + cfg.TaskDir,
		"LANG":                            "en_US.UTF-8",
		"TZ":                              ":UTC",
		"HOME":                            cfg.TmpDir,
		"LAMBDA_TASK_ROOT":                cfg.TaskDir,
		"AWS_REGION":                      cfg.Region,
		"AWS_DEFAULT_REGION":              cfg.Region,
		"AWS_EXECUTION_ENV":               "AWS_Lambda_provided",
		"_HANDLER":                        spec.Handler,
		"AWS_LAMBDA_FUNCTION_NAME":        spec.FunctionName,
		"AWS_LAMBDA_FUNCTION_VERSION":     spec.Version,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.FormatInt(spec.MemoryMB, 10),
		"AWS_LAMBDA_LOG_GROUP_NAME":       spec.LogGroup,
		"AWS_LAMBDA_LOG_STREAM_NAME":      spec.LogStream,
	}
	for k, v := range spec.Env {
		if k == "AWS_LAMBDA_RUNTIME_API" || k == "" || strings.ContainsAny(k, "=\x00") {
			continue
		}
		m[k] = v
	}
	env := make([]string, 0, len(m)+1)
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

// release gives back the agent's cgroup fds, the network namespace and
// the uid.
func (c *container) release() {
	for _, fd := range c.tasksFDs {
		_ = unix.Close(fd)
	}
	if c.cgroup2FD >= 0 {
		_ = unix.Close(c.cgroup2FD)
	}
	if c.netnsFD >= 0 {
		_ = unix.Close(c.netnsFD)
	}
	if c.uid >= 0 {
		c.s.freeUID(c.uid)
	}
	c.tasksFDs, c.cgroup2FD, c.netnsFD, c.uid = nil, -1, -1, -1
}

// ensureProcess returns the live process, spawning one if there is none.
func (c *container) ensureProcess() (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil, fmt.Errorf("container %q stopped: %w", c.id, errNotFound)
	}
	if c.proc != nil {
		return c.proc, nil
	}
	// With no live process, whatever is in the cgroup is left over from an
	// earlier one (a child that escaped its process group with setsid):
	// the new process must not share the cgroup with it.
	if c.cgroup2FD >= 0 {
		if err := drainCgroup(c.cgroup2FD, cgroupDrainBound); err != nil {
			return nil, fmt.Errorf("container %q: clear leftovers from the cgroup: %w", c.id, err)
		}
	}
	p, err := c.spawnLocked()
	if err != nil {
		return nil, err
	}
	c.proc = p
	return p, nil
}

// spawnLocked starts a new process (its shim, which starts the bootstrap)
// with its own Runtime API listener.
func (c *container) spawnLocked() (*process, error) {
	cfg := &c.s.cfg
	codeSrc := filepath.Join(cfg.CodeMount, c.spec.CodeDir)
	if st, err := os.Stat(filepath.Join(codeSrc, cfg.Bootstrap)); err != nil {
		return nil, fmt.Errorf("container %q: bootstrap: %w", c.id, err)
	} else if st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("container %q: bootstrap %s is not executable: %w", c.id, st.Name(), errInvalid)
	}
	for _, d := range []string{cfg.TaskDir, cfg.TmpDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("container %q: %w", c.id, err)
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("container %q: output pipe: %w", c.id, err)
	}
	spec := spawnSpec{
		self: cfg.ShimBinary, netnsFD: c.netnsFD, tasksFDs: c.tasksFDs, cgroup2FD: c.cgroup2FD, out: w,
		shim: shim.Spec{
			CodeSrc: codeSrc, TaskDir: cfg.TaskDir, Bootstrap: cfg.Bootstrap,
			TmpDir: cfg.TmpDir, TmpSize: cfg.TmpSizeBytes, ShmDir: cfg.ShmDir, ShmSize: cfg.TmpSizeBytes,
			Hide: cfg.hidden(), UID: c.uid, GID: c.uid, Env: slices.Clone(c.envBase), Hostname: cfg.Hostname,
			State: c.stateBinds(),
		},
	}
	var exitCh <-chan unix.WaitStatus
	spawnedAt := time.Now()
	sp, err := spawn(spec, func(start func() (int, error)) (int, error) {
		pid, ch, err := c.s.waiter.track(start)
		exitCh = ch
		return pid, err
	})
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("container %q: %w", c.id, err)
	}
	p := &process{
		c:         c,
		pid:       sp.pid,
		spawnedAt: spawnedAt,
		next:      make(chan *invocation),
		ready:     make(chan struct{}),
		exited:    make(chan struct{}),
		initErr:   make(chan struct{}),
		pipe:      newPipeReader(r, c.logs),
		status:    sp.status,
	}
	p.api, p.apiLn = newAPIServer(p), sp.api
	c.s.wg.Go(func() {
		// Serve ends when wait shuts the server down.
		if err := p.api.Serve(sp.api); err != nil && !errors.Is(err, net.ErrClosed) {
			c.log.Warn().Err(err).Msg("runtime API server")
		}
	})
	c.s.wg.Go(func() {
		if err := p.pipe.run(); err != nil {
			c.log.Warn().Err(err).Msg("output pipe")
		}
	})
	c.s.wg.Go(func() { p.wait(exitCh) })
	c.log.Debug().Int("pid", sp.pid).Int("uid", c.uid).Str("runtime_api", sp.api.Addr().String()).Msg("container process started")
	return p, nil
}

// apiShutdownBound bounds the wait for a dead process's Runtime API
// connections to close.
const apiShutdownBound = time.Second

// cgroupDrainBound bounds the wait for a container's cgroup to empty after
// its processes are killed.
const cgroupDrainBound = 5 * time.Second

// stop ends the container for good: SIGTERM to its process group, grace,
// SIGKILL, then SIGKILL to everything left in its cgroup. It returns once
// the process is reaped and the cgroup is empty (or after the grace and
// bounds, if they cannot be).
func (c *container) stop(grace time.Duration) {
	c.mu.Lock()
	c.stopped = true
	p := c.proc
	c.proc = nil
	c.mu.Unlock()
	if p != nil {
		p.intentional.Store(true)
		p.signal(unix.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-p.exited:
		case <-t.C:
			p.killAndWait(time.Second)
		}
		t.Stop()
	}
	c.mu.Lock()
	if c.cgroup2FD >= 0 {
		if err := drainCgroup(c.cgroup2FD, cgroupDrainBound); err != nil {
			c.log.Error().Err(err).Msg("cgroup not empty after stop")
		}
	}
	c.release()
	c.mu.Unlock()
}

// killLeftovers SIGKILLs everything in the container's cgroup2 directory
// once p is dead or being killed: children that left p's process group
// (setsid, setpgid) are out of reach of the group kill. It does nothing
// without a cgroup fd, or when a newer process than p already owns the
// cgroup (its spawn drained the cgroup first, and it must live). It does
// not wait for the kill to take effect: the next spawn and stop do.
func (c *container) killLeftovers(p *process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cgroup2FD < 0 || (c.proc != nil && c.proc != p) {
		return
	}
	pids, self, err := cgroupMembers(c.cgroup2FD)
	if err == nil && len(pids) > 0 {
		err = killCgroup(pids, self)
	}
	if err != nil {
		c.log.Error().Err(err).Int("pid", p.pid).Msg("kill container cgroup")
	}
}

// detach forgets p if it is still the container's process, so the next
// Invoke spawns a fresh one.
func (c *container) detach(p *process) {
	c.mu.Lock()
	if c.proc == p {
		c.proc = nil
	}
	c.mu.Unlock()
}

// invoke runs one invocation to completion and returns the Result and its
// body (the function's response, or its error document). Function failures
// are in the Result's Status; Result.Error is for platform failures.
func (c *container) invoke(ctx context.Context, req initproto.Invoke, payload []byte) (initproto.Result, []byte) {
	res := initproto.Result{ID: req.ID}
	deadline := time.UnixMilli(req.DeadlineUnixMs)
	if req.DeadlineUnixMs == 0 {
		d := c.s.cfg.DefaultTimeout
		if c.spec.TimeoutMs > 0 {
			d = time.Duration(c.spec.TimeoutMs) * time.Millisecond
		}
		deadline = time.Now().Add(d)
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()

	select {
	case c.slot <- struct{}{}:
	case <-timer.C:
		res.Error = fmt.Sprintf("container %q busy with another invocation until the deadline", c.id)
		return res, nil
	case <-ctx.Done():
		res.Error = "ember-init is shutting down"
		return res, nil
	}
	defer func() { <-c.slot }()

	inv := &invocation{
		id: req.ID, deadlineMs: deadline.UnixMilli(), traceID: req.TraceID,
		arn: req.FunctionARN, payload: payload, done: make(chan outcome, 1),
	}
	if inv.arn == "" {
		inv.arn = "arn:aws:lambda:" + c.s.cfg.Region + ":000000000000:function:" + c.spec.FunctionName
	}

	var (
		p    *process
		mark int64
		o    outcome
		ship *shipTarget
	)
	svc := c.s.logServiceFor(req.LogService)
	if svc != nil {
		ship = &shipTarget{ship: svc.ship, res: c.logResource(svc), invocation: req.ID}
	}
	// A process that was ready (it had called /next before) but dies before
	// taking this invocation died idle, e.g. after its previous invocation:
	// the invocation never ran, so it goes to a fresh process, once. A
	// process that dies during its own initialisation fails the invocation
	// (crashed, or function_error after init/error), so a broken function
	// cannot loop.
	for attempt := 0; ; attempt++ {
		var err error
		// Mark before a (re)spawn: a new process's first output belongs to
		// this invocation.
		mark = c.logs.mark(ship)
		if p, err = c.ensureProcess(); err != nil {
			res.Error = err.Error()
			return res, nil
		}
		wasReady := p.firstNext.Load() != 0
		// diedIdle: p, ready before, died without starting inv (before
		// taking it, or taken by a request of a runtime then dead).
		diedIdle := func() bool { return wasReady && attempt == 0 && inv.start.Load() == 0 && !p.initFailed() }
		select {
		case p.next <- inv:
			select {
			case o = <-inv.done:
			case <-p.exited:
				if diedIdle() {
					c.detach(p)
					continue
				}
				o = p.exitOutcome()
			case <-timer.C:
				o = c.timeout(p, inv)
			case <-ctx.Done():
				res.Error = "ember-init is shutting down"
				return res, nil
			}
		case <-p.initErr:
			o = p.initOutcome()
		case <-p.exited:
			if diedIdle() {
				c.detach(p)
				continue
			}
			o = p.exitOutcome()
		case <-timer.C:
			o = c.timeout(p, inv)
		case <-ctx.Done():
			res.Error = "ember-init is shutting down"
			return res, nil
		}
		break
	}

	o = late(o, deadline)
	res.Status, res.ErrorType = o.status, o.errType
	if start := inv.start.Load(); start != 0 {
		res.HandlerStartUnixNs = start
		end := o.at
		if end == 0 {
			end = time.Now().UnixNano()
		}
		res.DurationNs = end - start
	}
	if first := p.firstNext.Load(); first != 0 && !p.initReported {
		p.initReported = true // guarded by slot
		if !p.ahead.Load() {
			res.InitDurationNs = first - p.spawnedAt.UnixNano()
		}
	}
	p.pipe.sync()
	res.LogTail = c.logs.tail(mark, c.s.cfg.LogTailBytes)
	if n := c.logs.truncated(); n > 0 {
		res.LogTruncatedBytes = n
		res.LogTail = fmt.Appendf(res.LogTail, "\n[ember] %d bytes of this invocation's output were dropped: over the %d byte limit\n",
			n, c.s.cfg.MaxInvocationLogBytes)
	}
	if svc != nil {
		res.LogStats = svc.stats()
	}
	return res, o.body
}

// timeout kills p's process group and cgroup because inv ran past its
// deadline.
func (c *container) timeout(p *process, inv *invocation) outcome {
	p.cur.CompareAndSwap(inv, nil)
	c.detach(p)
	p.timedOut.Store(true)
	p.killAndWait(c.s.cfg.StopGrace)
	return outcome{status: initproto.StatusTimeout, errType: "Sandbox.Timedout", body: timedOutBody}
}

var timedOutBody = []byte(`{"errorMessage":"Task timed out: no response before the deadline","errorType":"Sandbox.Timedout"}`)

// late makes an answer that came after the deadline a timeout, whichever
// the invocation saw first: a handler whose context expires at the
// deadline (aws-lambda-go's) answers just after it, and under load its
// answer can be read before the deadline's timer. Its process finished the
// invocation and is kept.
func late(o outcome, deadline time.Time) outcome {
	if o.at == 0 || o.at <= deadline.UnixNano() || (o.status != initproto.StatusOK && o.status != initproto.StatusFunctionError) {
		return o
	}
	return outcome{status: initproto.StatusTimeout, errType: "Sandbox.Timedout", body: timedOutBody, at: o.at}
}

// invocation is one Invoke handed to a process.
type invocation struct {
	id         string
	deadlineMs int64
	traceID    string
	arn        string
	payload    []byte
	// start is when GET /next returned it (unix ns).
	start atomic.Int64
	done  chan outcome
	// call is the call (call.go) the invocation waits for, if any.
	call atomic.Pointer[pendingCall]
}

// outcome is how an invocation ended.
type outcome struct {
	status  string
	errType string
	body    []byte
	at      int64 // unix ns of the response, 0 if none
}

// process is one run of a container's bootstrap.
type process struct {
	c            *container
	pid          int
	spawnedAt    time.Time
	firstNext    atomic.Int64  // unix ns of the first GET /next
	ready        chan struct{} // closed at the first GET /next
	initReported bool          // guarded by c.slot
	// ahead: started by a pre-load, not for an invocation: its start-up is
	// no invocation's init.
	ahead atomic.Bool
	next  chan *invocation
	cur   atomic.Pointer[invocation]
	api   *fasthttp.Server // the Runtime API's, on apiLn
	apiLn net.Listener
	pipe  *pipeReader

	initErr     chan struct{} // closed once the runtime posts init/error
	initErrOnce sync.Once
	initErrType string
	initErrBody []byte

	exited chan struct{} // closed once reaped
	// status is the pipe on which the shim reports the bootstrap's end.
	status *os.File
	// shimWS is the shim's wait status; ended is the shim's report (zero
	// if it sent none: it was killed).
	shimWS      unix.WaitStatus
	ended       shim.Status
	reported    bool
	intentional atomic.Bool // stopped by Stop: no Exited event
	timedOut    atomic.Bool
}

func (p *process) signal(sig unix.Signal) {
	// The process group holds the tree unless a member left it (setsid):
	// killLeftovers reaches those through the cgroup. After the leader is
	// reaped the group id cannot be reused while members remain.
	_ = unix.Kill(-p.pid, sig)
}

func (p *process) killAndWait(bound time.Duration) {
	p.signal(unix.SIGKILL)
	p.c.killLeftovers(p)
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		p.c.log.Error().Int("pid", p.pid).Msg("process not reaped after SIGKILL")
	}
}

func (p *process) setInitErr(errType string, body []byte) {
	p.initErrOnce.Do(func() {
		p.initErrType, p.initErrBody = errType, body
		close(p.initErr)
	})
}

func (p *process) initFailed() bool {
	select {
	case <-p.initErr:
		return true
	default:
		return false
	}
}

func (p *process) initOutcome() outcome {
	return outcome{status: initproto.StatusFunctionError, errType: p.initErrType, body: p.initErrBody}
}

// exitOutcome is the outcome of an invocation whose process ended under it.
func (p *process) exitOutcome() outcome {
	select {
	case <-p.initErr:
		return p.initOutcome()
	default:
	}
	if p.reported && p.ended.Error != "" {
		if p.ended.Exec {
			body := fmt.Appendf(nil, `{"errorMessage":%q,"errorType":"Runtime.InvalidEntrypoint"}`, p.ended.Error)
			return outcome{status: initproto.StatusCrashed, errType: "Runtime.InvalidEntrypoint", body: body}
		}
		body := fmt.Appendf(nil, `{"errorMessage":%q,"errorType":"Ember.SandboxError"}`, "the sandbox could not start the function: "+p.ended.Error)
		return outcome{status: initproto.StatusCrashed, errType: "Ember.SandboxError", body: body}
	}
	code, sig := p.exitStatus()
	msg := fmt.Sprintf("exit status %d", code)
	if sig != 0 {
		msg = "signal: " + unix.SignalName(sig)
	}
	body := fmt.Appendf(nil, `{"errorMessage":"Runtime exited with error: %s","errorType":"Runtime.ExitError"}`, msg)
	return outcome{status: initproto.StatusCrashed, errType: "Runtime.ExitError", body: body}
}

// exitStatus is how the function's process ended: the shim's report, or,
// when the shim was killed before it could report (a timeout, a stop, the
// out-of-memory killer), the shim's own end.
func (p *process) exitStatus() (code int, sig unix.Signal) {
	if p.reported && p.ended.Error == "" {
		return p.ended.Exit, unix.Signal(p.ended.Signal)
	}
	if p.shimWS.Signaled() {
		return -1, p.shimWS.Signal()
	}
	return p.shimWS.ExitStatus(), 0
}

// wait reaps the process and cleans up after it.
func (p *process) wait(exit <-chan unix.WaitStatus) {
	p.shimWS = <-exit
	// The shim wrote its report before exiting; the pipe's write end is
	// now closed, so this read ends.
	if err := json.NewDecoder(p.status).Decode(&p.ended); err == nil {
		p.reported = true
	}
	p.status.Close()
	p.signal(unix.SIGKILL) // whatever is left of the tree
	p.c.killLeftovers(p)
	close(p.exited)
	p.c.detach(p)
	c := p.c
	c.s.wg.Go(func() {
		// Requests blocked on an invocation or a call returned at exited;
		// this closes the connections left (a peer that vanished without a
		// word, as in a checkpoint).
		ctx, cancel := context.WithTimeout(context.Background(), apiShutdownBound)
		defer cancel()
		err := p.api.ShutdownWithContext(ctx)
		_ = p.apiLn.Close() // Serve ends even if it had not begun
		if errors.Is(err, context.DeadlineExceeded) {
			c.log.Warn().Err(err).Msg("runtime API connections still open")
		}
	})
	code, sig := p.exitStatus()
	ev := initproto.Exited{ContainerID: p.c.id, ExitCode: code}
	if sig != 0 {
		ev.ExitCode = -1
		ev.Signal = unix.SignalName(sig)
	}
	lg := p.c.log.Info()
	if p.reported && p.ended.Error != "" {
		lg = p.c.log.Warn().Str("shim_error", p.ended.Error)
	}
	lg.Int("pid", p.pid).Int("exit_code", ev.ExitCode).Str("signal", ev.Signal).
		Bool("timed_out", p.timedOut.Load()).Bool("stopped", p.intentional.Load()).Msg("container process exited")
	if !p.intentional.Load() {
		p.c.s.event(initproto.TypeExited, ev)
	}
}

// stateBinds are the container's state mounts as the shim binds them.
func (c *container) stateBinds() []shim.Bind {
	var out []shim.Bind
	for _, m := range c.spec.State {
		out = append(out, shim.Bind{Src: filepath.Join(c.s.cfg.StateDir, m.Dir), Dst: m.Path})
	}
	return out
}

// preloadReady bounds how long a pre-load waits for the runtime's first
// GET /next (Lambda's init phase is bounded by 10 s too).
const preloadReady = 10 * time.Second

// awaitReady waits until the runtime asks for its first invocation: then
// the next invocation is a hot start.
func (p *process) awaitReady(bound time.Duration) error {
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-p.ready:
		return nil
	case <-p.initErr:
		return fmt.Errorf("container %q: the runtime reported an init error: %s", p.c.id, p.initErrType)
	case <-p.exited:
		return fmt.Errorf("container %q: the runtime exited before asking for an invocation", p.c.id)
	case <-t.C:
		return fmt.Errorf("container %q: the runtime did not ask for an invocation within %v", p.c.id, bound)
	}
}
