package hostagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/netns"
	"github.com/ember-run/ember/hostagent/network"
	"github.com/ember-run/ember/hostagent/sandbox"
)

// fakeNetwork stands in for the CNI plugins: it records attachments (id
// to the namespace's path) without connecting anything.
type fakeNetwork struct {
	mu       sync.Mutex
	live     map[string]string
	attached []string
	detached []string
}

var _ Network = (*fakeNetwork)(nil)

func newFakeNetwork() *fakeNetwork { return &fakeNetwork{live: map[string]string{}} }

func (n *fakeNetwork) Setup(context.Context, map[string]bool) error { return nil }
func (n *fakeNetwork) Close(context.Context) error                  { return nil }

func (n *fakeNetwork) Attach(ctx context.Context, id, netnsPath string) (network.Attachment, error) {
	if _, err := os.Stat(netnsPath); err != nil {
		return network.Attachment{}, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.live[id] = netnsPath
	n.attached = append(n.attached, id)
	return network.Attachment{}, nil
}

func (n *fakeNetwork) Detach(ctx context.Context, id, netnsPath string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.live, id)
	n.detached = append(n.detached, id)
	return nil
}

// liveIDs are the attachments not detached, sorted.
func (n *fakeNetwork) liveIDs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.live))
	for id := range n.live {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// fakeRuntime stands in for containerd in the pool-logic tests: Create
// starts an in-process fake ember-init on the instance's socket.
type fakeRuntime struct {
	mu        sync.Mutex
	live      map[string]*fakeInit
	stale     []string // ids List reports before any Create
	destroyed []string
	created   int
	specs     map[string]sandbox.InstanceSpec // of live instances
	// defined are the instances Define made, not started; fromDefined
	// counts the Creates that started one (of the same spec), undefined
	// the ones Destroy removed unstarted.
	defined     map[string]sandbox.InstanceSpec
	fromDefined int
	undefined   []string
	// defineGate, when set, holds every Define until it is closed.
	defineGate chan struct{}
	// startFails, when set, fails every Create after its created callback
	// (as a task whose start fails); refuseAdopt makes every fake
	// ember-init refuse the network namespaces the agent made.
	startFails  error
	refuseAdopt bool
	// images, when set, names the image of an instance made from another
	// than the runtime's (SameSpec).
	images map[string]string
}

var _ Runtime = (*fakeRuntime)(nil)

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{live: map[string]*fakeInit{}, specs: map[string]sandbox.InstanceSpec{}, defined: map[string]sandbox.InstanceSpec{}}
}

func (r *fakeRuntime) Create(ctx context.Context, spec sandbox.InstanceSpec, created func(pid uint32)) (sandbox.Instance, error) {
	r.mu.Lock()
	startFails, refuseAdopt := r.startFails, r.refuseAdopt
	r.mu.Unlock()
	if created != nil { // the instance's "namespaces": this process's
		created(uint32(os.Getpid()))
	}
	if startFails != nil {
		return sandbox.Instance{}, startFails
	}
	fi, err := startFakeInit(spec.ID, filepath.Join(spec.SocketDir, initproto.SocketName))
	if err != nil {
		return sandbox.Instance{}, err
	}
	fi.refuseAdopt = refuseAdopt
	r.mu.Lock()
	r.live[spec.ID] = fi
	r.specs[spec.ID] = spec
	r.created++
	if was, ok := r.defined[spec.ID]; ok {
		delete(r.defined, spec.ID)
		if reflect.DeepEqual(was, spec) {
			r.fromDefined++
		}
	}
	r.mu.Unlock()
	return sandbox.Instance{ID: spec.ID, Pid: 1, CgroupPath: "/ember/" + spec.ID}, nil
}

func (r *fakeRuntime) Destroy(ctx context.Context, id string) error {
	r.mu.Lock()
	if _, ok := r.defined[id]; ok {
		delete(r.defined, id)
		r.undefined = append(r.undefined, id)
		r.mu.Unlock()
		return nil
	}
	fi := r.live[id]
	delete(r.live, id)
	for i, s := range r.stale {
		if s == id {
			r.stale = append(r.stale[:i], r.stale[i+1:]...)
			break
		}
	}
	r.destroyed = append(r.destroyed, id)
	r.mu.Unlock()
	if fi != nil {
		fi.close()
	}
	return nil
}

func (r *fakeRuntime) List(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]string(nil), r.stale...)
	for id := range r.live {
		out = append(out, id)
	}
	for id := range r.defined {
		out = append(out, id)
	}
	return out, nil
}

// SameSpec: an instance holds the spec it was created with, or that a test
// gave it in specs (BootMilliCPU aside, as the runtime's CPU quota), and
// is of the runtime's image unless images names another.
func (r *fakeRuntime) SameSpec(ctx context.Context, id string, spec sandbox.InstanceSpec) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	had, ok := r.specs[id]
	if _, live := r.live[id]; !live || !ok {
		return false, fmt.Errorf("instance %s: not found", id)
	}
	if _, other := r.images[id]; other {
		return false, nil
	}
	had.BootMilliCPU, spec.BootMilliCPU = 0, 0
	return reflect.DeepEqual(had, spec), nil
}

func (r *fakeRuntime) Define(ctx context.Context, spec sandbox.InstanceSpec) error {
	if r.defineGate != nil {
		select {
		case <-r.defineGate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.defined[spec.ID]; ok {
		return fmt.Errorf("instance %s defined twice", spec.ID)
	}
	r.defined[spec.ID] = spec
	return nil
}

// countDefined counts the instances defined and not started, by class
// when class is set.
func (r *fakeRuntime) countDefined(class ...string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.defined {
		if len(class) == 0 || s.Class == class[0] {
			n++
		}
	}
	return n
}

// startedDefined counts the Creates that started an instance defined
// ahead with the same spec.
func (r *fakeRuntime) startedDefined() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fromDefined
}

func (r *fakeRuntime) get(id string) *fakeInit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live[id]
}

func (r *fakeRuntime) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// countClass counts the live instances of class.
func (r *fakeRuntime) countClass(class string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for id := range r.live {
		if r.specs[id].Class == class {
			n++
		}
	}
	return n
}

// memoryOf is the memory an instance was created with.
func (r *fakeRuntime) memoryOf(id string) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specs[id].MemoryMB
}

// fakeInit speaks initproto like ember-init: Hello, Start, Invoke (echoes
// the payload, or follows the payload's instruction), Stop.
type fakeInit struct {
	id string
	ln *net.UnixListener
	wg sync.WaitGroup

	mu      sync.Mutex
	conns   []*initproto.Conn
	running map[string]bool // container id -> has a process
	// reportReady: the container's Start asked for TypeReady.
	reportReady map[string]bool
	started     []initproto.StartContainer
	stopped     []string
	invoked     int
	fdCounts    []int
	// events is what happened in order: "invoke ID", "stop ID".
	events []string
	// hold, while set, delays the answer to every Stop until it is closed
	// (answered beside other frames, as ember-init does).
	hold chan struct{}
	// invokeHold, while set, delays the answer to every invocation whose
	// payload is "hold" until it is closed.
	invokeHold chan struct{}
	// refuseAdopt: Netns with Adopt is answered with an error. netns
	// holds the namespaces set aside, by id (closed at close).
	refuseAdopt bool
	netns       map[string]int
}

// holdInvokes makes invocations of payload "hold" wait until the returned
// release is called.
func (f *fakeInit) holdInvokes() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.invokeHold = ch
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.invokeHold = nil
		f.mu.Unlock()
		close(ch)
	}
}

// holdStops makes stops wait until the returned release is called.
func (f *fakeInit) holdStops() (release func()) {
	ch := make(chan struct{})
	f.mu.Lock()
	f.hold = ch
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		f.hold = nil
		f.mu.Unlock()
		close(ch)
	}
}

// netnsFrame answers Netns as ember-init does: a namespace made (a real
// one of this process's), adopted (unless refuseAdopt) or released, each
// an event ("netns make|adopt|release ID").
func (f *fakeInit) netnsFrame(conn *initproto.Conn, fr *initproto.Frame) {
	var req initproto.Netns
	_ = fr.Decode(&req)
	out := initproto.Netns{ID: req.ID, Release: req.Release, Adopt: req.Adopt}
	var send []int
	f.mu.Lock()
	if f.netns == nil {
		f.netns = map[string]int{}
	}
	switch {
	case req.Release:
		f.events = append(f.events, "netns release "+req.ID)
		if fd, ok := f.netns[req.ID]; ok {
			_ = closeFD(fd)
			delete(f.netns, req.ID)
		}
	case req.Adopt && (f.refuseAdopt || len(fr.FDs) != 1):
		f.events = append(f.events, "netns refuse "+req.ID)
		out.Error = "refused"
	case req.Adopt:
		f.events = append(f.events, "netns adopt "+req.ID)
		f.netns[req.ID], fr.FDs = fr.FDs[0], nil
	default:
		f.events = append(f.events, "netns make "+req.ID)
		fd, err := netns.New()
		if err != nil {
			out.Error = err.Error()
			break
		}
		f.netns[req.ID] = fd
		send = []int{fd}
	}
	f.mu.Unlock()
	for _, fd := range fr.FDs {
		_ = closeFD(fd)
	}
	_ = conn.Write(initproto.TypeNetnsReady, fr.Seq, out, nil, send...)
}

// netnsEvents are the fake's Netns events, in order.
func (f *fakeInit) netnsEvents() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.events {
		if strings.HasPrefix(e, "netns ") {
			out = append(out, e)
		}
	}
	return out
}

func startFakeInit(id, path string) (*fakeInit, error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	f := &fakeInit{id: id, ln: ln, running: map[string]bool{}, reportReady: map[string]bool{}}
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *fakeInit) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.AcceptUnix()
		if err != nil {
			return
		}
		conn := initproto.NewConn(c)
		f.mu.Lock()
		f.conns = append(f.conns, conn)
		f.mu.Unlock()
		f.mu.Lock()
		var held []string
		for id := range f.running {
			held = append(held, id)
		}
		f.mu.Unlock()
		sort.Strings(held)
		if err := conn.Write(initproto.TypeHello, 0, initproto.Hello{InstanceID: f.id, Pid: 1, Version: "fake", Containers: held, Ready: true}, nil); err != nil {
			continue
		}
		f.wg.Add(1)
		go f.serve(conn)
	}
}

func (f *fakeInit) serve(conn *initproto.Conn) {
	defer f.wg.Done()
	for {
		fr, err := conn.Read()
		if err != nil {
			return
		}
		if fr.Type == initproto.TypeNetns {
			f.netnsFrame(conn, fr)
			continue
		}
		for _, fd := range fr.FDs {
			_ = closeFD(fd)
		}
		switch fr.Type {
		case initproto.TypeStart:
			var sc initproto.StartContainer
			_ = fr.Decode(&sc)
			f.mu.Lock()
			f.started = append(f.started, sc)
			f.running[sc.ContainerID] = false
			f.reportReady[sc.ContainerID] = sc.ReportReady
			f.fdCounts = append(f.fdCounts, len(fr.FDs))
			f.mu.Unlock()
			_ = conn.Write(initproto.TypeStarted, fr.Seq, initproto.Started{ContainerID: sc.ContainerID, Pid: 42}, nil)
		case initproto.TypeInvoke:
			var inv initproto.Invoke
			_ = fr.Decode(&inv)
			res := initproto.Result{ID: inv.ID, Status: initproto.StatusOK, HandlerStartUnixNs: 1, DurationNs: 2}
			body := fr.Body
			f.mu.Lock()
			f.invoked++
			f.events = append(f.events, "invoke "+inv.ContainerID)
			hasProc, known := f.running[inv.ContainerID]
			switch {
			case !known:
				res = initproto.Result{ID: inv.ID, Error: "container not found"}
			case string(fr.Body) == "crash":
				res.Status, res.ErrorType, body = initproto.StatusCrashed, "Runtime.ExitError", []byte(`{"errorType":"Runtime.ExitError"}`)
				f.running[inv.ContainerID] = false
			default:
				if !hasProc {
					res.InitDurationNs = 1000
					f.running[inv.ContainerID] = true
					if f.reportReady[inv.ContainerID] && string(fr.Body) != "no-ready" { // its runtime's first GET /next
						_ = conn.Write(initproto.TypeReady, 0, initproto.Ready{ContainerID: inv.ContainerID}, nil)
					}
				}
			}
			hold := f.invokeHold
			f.mu.Unlock()
			if string(fr.Body) == "die" {
				f.close() // the instance's PID 1 dies mid-invocation
				return
			}
			if string(fr.Body) == "hold" && hold != nil {
				f.wg.Add(1)
				go func() { // answered beside other frames, as ember-init does
					defer f.wg.Done()
					<-hold
					_ = conn.Write(initproto.TypeResult, fr.Seq, res, body)
				}()
				continue
			}
			_ = conn.Write(initproto.TypeResult, fr.Seq, res, body)
		case initproto.TypeStop:
			var st initproto.Stop
			_ = fr.Decode(&st)
			f.mu.Lock()
			hold := f.hold
			f.mu.Unlock()
			stop := func() {
				if hold != nil {
					<-hold
				}
				f.mu.Lock()
				f.stopped = append(f.stopped, st.ContainerID)
				f.events = append(f.events, "stop "+st.ContainerID)
				delete(f.running, st.ContainerID)
				f.mu.Unlock()
				_ = conn.Write(initproto.TypeStopped, fr.Seq, initproto.Stopped{ContainerID: st.ContainerID}, nil)
			}
			if hold == nil {
				stop()
				continue
			}
			f.wg.Add(1)
			go func() { defer f.wg.Done(); stop() }()
		default:
			panic(fmt.Sprintf("fake init: unexpected frame type %d", fr.Type))
		}
	}
}

func (f *fakeInit) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		_ = c.Close()
	}
	for id, fd := range f.netns {
		_ = closeFD(fd)
		delete(f.netns, id)
	}
	f.mu.Unlock()
}

func (f *fakeInit) eventLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

func (f *fakeInit) stoppedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.stopped...)
}

func (f *fakeInit) startedSpecs() []initproto.StartContainer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]initproto.StartContainer(nil), f.started...)
}

// fakeCgroups records children; they carry no fds.
type fakeCgroups struct {
	mu      sync.Mutex
	made    map[string]CgroupLimits
	removed map[string]bool
	// quotas are the CFS quota changes, in order: "<path> <us>", or
	// "refused <path> <us>" for one the kernel would refuse; quota
	// the ones in force, by path (a parent without one is unlimited).
	quotas []string
	quota  map[string]int64
}

// SetInstanceCPUQuota refuses, as cgroup v1 does, a quota below one of the
// instance's children's.
func (f *fakeCgroups) SetInstanceCPUQuota(path string, us int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, q := range f.quota {
		if strings.HasPrefix(p, path+"/") && !f.removed[p] && q > us {
			f.quotas = append(f.quotas, fmt.Sprintf("refused %s %d", path, us))
			return fmt.Errorf("fake cgroups: %s quota %d below child %s's %d: %w", path, us, p, q, fs.ErrInvalid)
		}
	}
	f.setQuota(path, us)
	return nil
}

func (f *fakeCgroups) setQuota(path string, us int64) {
	if f.quota == nil {
		f.quota = map[string]int64{}
	}
	f.quota[path] = us
	f.quotas = append(f.quotas, fmt.Sprintf("%s %d", path, us))
}

func (f *fakeCgroups) quotaLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.quotas...)
}

// quotaLogOf is quotaLog's entries for instance cgroup inst and its
// children (other instances boot beside).
func (f *fakeCgroups) quotaLogOf(inst string) []string {
	var out []string
	for _, q := range f.quotaLog() {
		if strings.Contains(q, inst+" ") || strings.Contains(q, inst+"/") {
			out = append(out, q)
		}
	}
	return out
}

func newFakeCgroups() *fakeCgroups {
	return &fakeCgroups{made: map[string]CgroupLimits{}, removed: map[string]bool{}}
}

func (f *fakeCgroups) Create(parent, name string, uid int, l CgroupLimits) (CgroupChild, error) {
	if uid < 100000 || (uid-100000)%65536 != 0 {
		return nil, errors.New("fake cgroups: owner uid is not an instance's root")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	p := parent + "/" + name
	f.made[p] = l
	return &fakeChild{f: f, path: p}, nil
}

func (f *fakeCgroups) Open(parent, name string) (CgroupChild, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := parent + "/" + name
	if _, ok := f.made[p]; !ok || f.removed[p] {
		return nil, fmt.Errorf("fake cgroups: no cgroup %s", p)
	}
	return &fakeChild{f: f, path: p}, nil
}

func (f *fakeCgroups) live() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.made) - len(f.removed)
}

type fakeChild struct {
	f    *fakeCgroups
	path string
}

func (c *fakeChild) FDs() ([]int, []string)      { return nil, nil }
func (c *fakeChild) CloseFDs()                   {}
func (c *fakeChild) OOMKills() int64             { return 0 }
func (c *fakeChild) MemoryUsage() (int64, error) { return 0, nil }
func (c *fakeChild) Freeze(bool) error           { return nil }
func (c *fakeChild) Path(string) string          { return "" }

// SetCPUQuota refuses, as cgroup v1 does, a quota above its instance's.
func (c *fakeChild) SetCPUQuota(us int64) error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	if c.f.removed[c.path] {
		return fs.ErrNotExist
	}
	if q, ok := c.f.quota[path.Dir(c.path)]; ok && us > q {
		c.f.quotas = append(c.f.quotas, fmt.Sprintf("refused %s %d", c.path, us))
		return fmt.Errorf("fake cgroups: %s quota %d above its instance's %d: %w", c.path, us, q, fs.ErrInvalid)
	}
	c.f.setQuota(c.path, us)
	return nil
}

func (c *fakeChild) Remove() error {
	c.f.mu.Lock()
	c.f.removed[c.path] = true
	c.f.mu.Unlock()
	return nil
}
