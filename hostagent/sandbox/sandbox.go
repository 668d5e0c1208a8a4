package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/contrib/seccomp"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/image"
	"github.com/ember-run/ember/hostagent/initproto"
)

// Capabilities are exactly the capabilities ember-init gets: what it needs
// to build function containers (mount namespaces, bind mounts, switching to
// the function's uid, dropping the bounding set) and to stop them (KILL:
// functions run as another uid, so a timeout's SIGKILL needs it). With a
// user namespace they are confined to it: KILL reaches only the instance's
// own processes.
//
// NET_ADMIN lets it bring up the loopback of each container's network
// namespace, which it creates (the namespace belongs to the instance's user
// namespace, so this reaches no network of the host's).
var Capabilities = []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_KILL"}

// Instance is a started instance.
type Instance struct {
	ID string
	// Pid is the host pid of ember-init.
	Pid uint32
	// CgroupPath is the runc cgroupsPath, "/ember/<id>": the instance's
	// cgroup below every hierarchy root (see package cgroup).
	CgroupPath string
}

// Runtime creates and destroys instances in one containerd namespace. It is
// safe for concurrent use.
type Runtime struct {
	client      *containerd.Client
	namespace   string
	imageName   string
	runtime     string
	snapshotter string
	grace       time.Duration
	labels      map[string]string
	userns      bool
	hostID      uint32
	idRange     uint32
	memsw       bool

	mu  sync.Mutex
	img containerd.Image
	// defined are the instances whose container Define made, by id, with
	// the spec it was made from, until Create starts one or Destroy
	// removes it.
	defined map[string]InstanceSpec
}

// New returns a Runtime that starts instances of image (see image.Ensure)
// in namespace.
func New(client *containerd.Client, namespace, imageName string, opts ...Option) (*Runtime, error) {
	if client == nil || namespace == "" || imageName == "" {
		return nil, fmt.Errorf("sandbox: client, namespace and image are required")
	}
	r := &Runtime{
		client:      client,
		namespace:   namespace,
		imageName:   imageName,
		runtime:     DefaultRuntime,
		snapshotter: DefaultSnapshotter,
		grace:       DefaultGrace,
		labels:      map[string]string{},
		userns:      true,
		hostID:      DefaultHostID,
		idRange:     DefaultIDRange,
	}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, fmt.Errorf("sandbox option: %w", err)
		}
	}
	_, err := os.Stat(filepath.Join(cgroup.Root, "memory", "memory.memsw.limit_in_bytes"))
	r.memsw = err == nil
	return r, nil
}

// HostRootUID is the host uid the root of an instance maps to by default
// (InstanceSpec.HostUID zero); 0 without a user namespace.
func (r *Runtime) HostRootUID() int { return int(r.hostID) }

// IDRange is how many uids (and gids) an instance's user namespace maps; 0
// without a user namespace. Instances given HostUIDs at least this far
// apart share no host uid.
func (r *Runtime) IDRange() int { return int(r.idRange) }

// hostUID is the host uid spec's root maps to.
func (r *Runtime) hostUID(spec InstanceSpec) uint32 {
	if spec.HostUID != 0 {
		return spec.HostUID
	}
	return r.hostID
}

func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.namespace)
}

func (r *Runtime) image(ctx context.Context) (containerd.Image, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.img != nil {
		return r.img, nil
	}
	img, err := r.client.GetImage(ctx, r.imageName)
	if err != nil {
		return nil, fmt.Errorf("instance image %s: %w", r.imageName, err)
	}
	r.img = img
	return img, nil
}

// Create starts an instance and returns once ember-init runs. On error
// nothing of the instance is left in containerd. An instance Define made
// from the same spec starts from its container. created, if not nil, is
// called with the pid of the instance's PID 1 once its namespaces exist,
// before anything of the instance runs (runc's init waits to exec
// ember-init); it must not block.
func (r *Runtime) Create(ctx context.Context, spec InstanceSpec, created func(pid uint32)) (Instance, error) {
	ctx = r.ctx(ctx)
	container, err := r.takeDefined(ctx, spec)
	if err != nil {
		return Instance{}, err
	}
	if err := r.check(&spec); err != nil {
		r.deleteContainer(ctx, container)
		return Instance{}, err
	}
	if err := r.prepareDirs(spec); err != nil {
		r.deleteContainer(ctx, container)
		return Instance{}, fmt.Errorf("instance %s: %w", spec.ID, err)
	}
	cgroupPath := cgroupPathOf(spec.ID)
	if container == nil {
		if container, err = r.newContainer(ctx, spec); err != nil {
			return Instance{}, err
		}
	}
	task, err := container.NewTask(ctx, cio.LogFile(spec.LogPath))
	if err != nil {
		r.deleteContainer(ctx, container)
		return Instance{}, fmt.Errorf("create task %s: %w", spec.ID, err)
	}
	fail := func(err error) (Instance, error) {
		_, _ = task.Delete(ctx, containerd.WithProcessKill)
		r.deleteContainer(ctx, container)
		_ = cgroup.RemoveTree(cgroupPath)
		return Instance{}, fmt.Errorf("instance %s: %w", spec.ID, err)
	}
	if r.userns {
		if err := r.delegateCgroup2(cgroupPath, r.hostUID(spec)); err != nil {
			return fail(err)
		}
	}
	if created != nil {
		created(task.Pid())
	}
	if err := task.Start(ctx); err != nil {
		return fail(fmt.Errorf("start task: %w", err))
	}
	return Instance{ID: spec.ID, Pid: task.Pid(), CgroupPath: cgroupPath}, nil
}

// Define makes instance spec's container (its record and its root file
// system's snapshot) without starting it, so that a later Create with the
// same spec starts at runc: 10-18 ms of a boot here. Destroy removes it
// like any instance; an agent that dies leaves it to its next start's
// sweep (List).
func (r *Runtime) Define(ctx context.Context, spec InstanceSpec) error {
	ctx = r.ctx(ctx)
	asked := spec // compared with Create's, before either has its defaults
	if err := r.check(&spec); err != nil {
		return err
	}
	if _, err := r.newContainer(ctx, spec); err != nil {
		return err
	}
	r.mu.Lock()
	if r.defined == nil {
		r.defined = map[string]InstanceSpec{}
	}
	r.defined[spec.ID] = asked
	r.mu.Unlock()
	return nil
}

// takeDefined returns the container Define made for spec's id, or nil if
// there is none (or it is gone). One made from another spec is deleted
// (and nil returned): the instance is made again from spec.
func (r *Runtime) takeDefined(ctx context.Context, spec InstanceSpec) (containerd.Container, error) {
	r.mu.Lock()
	was, ok := r.defined[spec.ID]
	delete(r.defined, spec.ID)
	r.mu.Unlock()
	if !ok {
		return nil, nil
	}
	container, err := r.client.LoadContainer(ctx, spec.ID)
	switch {
	case errdefs.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("instance %s: load its container, defined ahead: %w", spec.ID, err)
	case !reflect.DeepEqual(was, spec):
		r.deleteContainer(ctx, container)
		return nil, nil
	}
	return container, nil
}

// deleteContainer deletes a container whose task is gone or never was,
// with its snapshot (nil: nothing to do).
func (r *Runtime) deleteContainer(ctx context.Context, container containerd.Container) {
	if container != nil {
		_ = container.Delete(ctx, containerd.WithSnapshotCleanup)
	}
}

// check validates spec for this runtime and fills its defaults.
func (r *Runtime) check(spec *InstanceSpec) error {
	if err := spec.Validate(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if r.userns && spec.HostUID != 0 && spec.HostUID < r.hostID {
		return fmt.Errorf("sandbox: instance %s: host uid %d is below the runtime's base %d", spec.ID, spec.HostUID, r.hostID)
	}
	return nil
}

// newContainer makes instance spec's containerd container. The root file
// system is a read-only view owned by the host's root: inside a user
// namespace it shows as nobody's, which is all ember-init needs (it only
// reads and executes it), and no chowned copy per instance uid range is
// made.
func (r *Runtime) newContainer(ctx context.Context, spec InstanceSpec) (containerd.Container, error) {
	img, err := r.image(ctx)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", spec.ID, err)
	}
	labels := map[string]string{LabelRole: RoleInstance, LabelClass: spec.Class}
	for k, v := range r.labels {
		labels[k] = v
	}
	container, err := r.client.NewContainer(ctx, spec.ID,
		containerd.WithSnapshotter(r.snapshotter),
		containerd.WithImageName(img.Name()),
		containerd.WithNewSnapshotView(spec.ID, img),
		containerd.WithRuntime(r.runtime, nil),
		containerd.WithContainerLabels(labels),
		containerd.WithNewSpec(r.specOpts(spec, cgroupPathOf(spec.ID))...),
	)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", spec.ID, err)
	}
	return container, nil
}

// cgroupPathOf is instance id's cgroup, under CgroupParent.
func cgroupPathOf(id string) string { return CgroupParent + "/" + id }

// prepareDirs makes the host directories the instance mounts or writes.
func (r *Runtime) prepareDirs(spec InstanceSpec) error {
	if err := os.MkdirAll(spec.SocketDir, 0o700); err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	if err := os.Chown(spec.SocketDir, int(r.hostUID(spec)), int(r.hostUID(spec))); err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	if err := os.Chmod(spec.SocketDir, 0o700); err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	if err := os.MkdirAll(spec.CodeDir, 0o755); err != nil {
		return fmt.Errorf("code dir: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	if spec.LogDir != "" {
		// ember-init, root of the instance, writes the functions' output here.
		if err := os.MkdirAll(spec.LogDir, 0o700); err != nil {
			return fmt.Errorf("function log dir: %w", err)
		}
		if err := os.Chown(spec.LogDir, int(r.hostUID(spec)), int(r.hostUID(spec))); err != nil {
			return fmt.Errorf("function log dir: %w", err)
		}
	}
	return nil
}

// delegateCgroup2 hands the instance's cgroup2 directory to its mapped root,
// as cgroup2 delegation prescribes (the directory, cgroup.procs,
// cgroup.threads). Without it, ember-init may not move a process from its own
// cgroup into a child's (clone3 CLONE_INTO_CGROUP needs write access to
// cgroup.procs of the common ancestor). runc does not do this in the hybrid
// layout. The limits stay in the v1 hierarchies, which are not delegated.
func (r *Runtime) delegateCgroup2(cgroupPath string, uid uint32) error {
	dir := filepath.Join(cgroup.Root, cgroup.Unified, cgroupPath)
	for _, f := range []string{"", "cgroup.procs", "cgroup.threads"} {
		if err := os.Lchown(filepath.Join(dir, f), int(uid), int(uid)); err != nil {
			return fmt.Errorf("delegate cgroup2 dir: %w", err)
		}
	}
	return nil
}

func (r *Runtime) specOpts(spec InstanceSpec, cgroupPath string) []oci.SpecOpts {
	memory := spec.MemoryMB << 20
	mounts := []specs.Mount{
		{Destination: initproto.SocketDir, Type: "bind", Source: spec.SocketDir,
			Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}},
		{Destination: initproto.CodeMount, Type: "bind", Source: spec.CodeDir,
			Options: []string{"rbind", "ro", "nosuid", "nodev"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=1777", "size=" + DefaultTmpSize}},
	}
	if spec.LogDir != "" {
		mounts = append(mounts, specs.Mount{Destination: initproto.LogDir, Type: "bind", Source: spec.LogDir,
			Options: []string{"rbind", "rw", "nosuid", "nodev", "noexec"}})
	}
	if spec.StateDir != "" {
		mounts = append(mounts, specs.Mount{Destination: initproto.StateDir, Type: "bind", Source: spec.StateDir,
			Options: []string{"rbind", "rw", "nosuid", "nodev", "rslave"}})
	}
	if spec.ResolvConf != "" {
		mounts = append(mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: spec.ResolvConf,
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}})
	}
	args := []string{image.InitPath}
	if spec.TmpMB > 0 {
		args = append(args, "--tmp-size-mb", strconv.FormatInt(spec.TmpMB, 10))
	}
	if spec.OrphanTimeout > 0 {
		args = append(args, "--orphan-timeout", spec.OrphanTimeout.String())
	}
	opts := []oci.SpecOpts{
		oci.WithProcessArgs(args...),
		oci.WithProcessCwd("/"),
		oci.WithEnv(spec.Env),
		oci.WithHostname(spec.ID),
		oci.WithRootFSReadonly(),
		oci.WithNoNewPrivileges,
		oci.WithMounts(mounts),
		oci.WithCgroup(cgroupPath),
		oci.WithMemoryLimit(uint64(memory)),
		oci.WithCPUShares(spec.CPUShares),
		oci.WithCPUCFS(spec.bootQuotaUs(), CFSPeriodUs),
		oci.WithPidsLimit(spec.PidsLimit),
	}
	if r.memsw {
		opts = append(opts, oci.WithMemorySwap(memory))
	}
	if r.userns {
		host := r.hostUID(spec)
		opts = append(opts, oci.WithUserNamespace(
			[]specs.LinuxIDMapping{{ContainerID: 0, HostID: host, Size: r.idRange}},
			[]specs.LinuxIDMapping{{ContainerID: 0, HostID: host, Size: r.idRange}},
		))
	}
	// The seccomp profile derives its rules from the capabilities: last.
	return append(opts, oci.WithCapabilities(Capabilities), withNativeSeccompProfile)
}

// withNativeSeccompProfile is containerd's default seccomp profile (its
// rules derived from the capabilities) for the x86-64 system call table
// only, Ember's one architecture (the function filter, hostagent/seccomp,
// exists for it alone; elsewhere the default's tables stay). The default
// profile also allows the i386 (int $0x80) and x32 tables, which nothing in
// an instance uses: ember-init and ember-shim are x86-64 Go programs, and
// the function filter kills a function process that makes such a call.
// Leaving them out makes the instance's filter refuse them (runc's action
// for a table the profile does not list: the calling thread is killed) and
// takes most of the filter's cost off a boot: runc compiles the profile
// with libseccomp inside every instance as it starts, 50-70 ms of a cold
// start on these machines for three tables, about 5 ms for one.
func withNativeSeccompProfile(_ context.Context, _ oci.Client, _ *containers.Container, s *specs.Spec) error {
	p := seccomp.DefaultProfile(s)
	if runtime.GOARCH == "amd64" {
		p.Architectures = []specs.Arch{specs.ArchX86_64}
	}
	s.Linux.Seccomp = p
	return nil
}

// Destroy stops instance id: SIGTERM, the grace period, SIGKILL; then it
// deletes the task, the container with its snapshot, and any cgroup left
// behind. An instance that does not exist is success.
func (r *Runtime) Destroy(ctx context.Context, id string) error {
	ctx = r.ctx(ctx)
	r.mu.Lock()
	delete(r.defined, id)
	r.mu.Unlock()
	container, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		return cgroup.RemoveTree(cgroupPathOf(id))
	}
	if err != nil {
		return fmt.Errorf("destroy %s: load container: %w", id, err)
	}
	if err := r.stopTask(ctx, container); err != nil {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	if err := container.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("destroy %s: delete container: %w", id, err)
	}
	if err := cgroup.RemoveTree(cgroupPathOf(id)); err != nil {
		return fmt.Errorf("destroy %s: %w", id, err)
	}
	return nil
}

func (r *Runtime) stopTask(ctx context.Context, container containerd.Container) error {
	task, err := container.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load task: %w", err)
	}
	status, err := task.Status(ctx)
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("task status: %w", err)
	}
	running := err == nil && (status.Status == containerd.Running || status.Status == containerd.Paused)
	if running {
		exited, err := task.Wait(ctx)
		if err != nil {
			return fmt.Errorf("wait task: %w", err)
		}
		if err := r.kill(ctx, task, syscall.SIGTERM); err != nil {
			return err
		}
		if r.grace > 0 {
			timer := time.NewTimer(r.grace)
			select {
			case <-exited:
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return ctx.Err()
			}
			timer.Stop()
		}
		if err := r.kill(ctx, task, syscall.SIGKILL); err != nil {
			return err
		}
		select {
		case <-exited:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete task: %w", err)
	}
	return nil
}

// kill signals the whole instance; a task that already exited is fine.
func (r *Runtime) kill(ctx context.Context, task containerd.Task, sig syscall.Signal) error {
	err := task.Kill(ctx, sig, containerd.WithKillAll)
	if err == nil || errdefs.IsNotFound(err) || strings.Contains(err.Error(), "process already finished") {
		return nil
	}
	return fmt.Errorf("signal %v: %w", sig, err)
}

// ImageName is the image this runtime starts instances from.
func (r *Runtime) ImageName() string { return r.imageName }

// ImageOf is the image instance id was made from: another ember-init,
// ember-shim or busybox than this runtime's is another image name
// (image.Inputs.Tag).
func (r *Runtime) ImageOf(ctx context.Context, id string) (string, error) {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return "", fmt.Errorf("instance %s: %w", id, err)
	}
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return "", fmt.Errorf("instance %s: %w", id, err)
	}
	return info.Image, nil
}

// SameSpec reports whether instance id's container is the one this
// runtime would make for spec now: made from its image, under its runtime
// and snapshotter, holding the runtime spec it makes, the CPU quota aside
// (a boot may have had a boost). Another image (ember-init, ember-shim,
// busybox) or another sandbox (capabilities, seccomp profile, mounts,
// limits, user namespace, ember-init's flags), from another configuration
// or another build of this package or of containerd's client, is not the
// same.
func (r *Runtime) SameSpec(ctx context.Context, id string, spec InstanceSpec) (bool, error) {
	ctx = r.ctx(ctx)
	if err := r.check(&spec); err != nil {
		return false, err
	}
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return false, fmt.Errorf("instance %s: %w", id, err)
	}
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return false, fmt.Errorf("instance %s: %w", id, err)
	}
	if info.Spec == nil {
		return false, fmt.Errorf("instance %s: its container has no runtime spec", id)
	}
	if info.Image != r.imageName || info.Runtime.Name != r.runtime || info.Snapshotter != r.snapshotter {
		return false, nil
	}
	var had specs.Spec
	dec := json.NewDecoder(bytes.NewReader(info.Spec.GetValue()))
	dec.DisallowUnknownFields() // a field this build does not know is not its spec
	if err := dec.Decode(&had); err != nil {
		return false, nil
	}
	want, err := oci.GenerateSpec(ctx, r.client, &info, r.specOpts(spec, cgroupPathOf(id))...)
	if err != nil {
		return false, fmt.Errorf("instance %s: %w", id, err)
	}
	a, err := json.Marshal(withoutCPUQuota(&had))
	if err != nil {
		return false, err
	}
	b, err := json.Marshal(withoutCPUQuota(want))
	if err != nil {
		return false, err
	}
	return bytes.Equal(a, b), nil
}

// withoutCPUQuota is s without its CFS quota.
func withoutCPUQuota(s *specs.Spec) *specs.Spec {
	if s.Linux != nil && s.Linux.Resources != nil && s.Linux.Resources.CPU != nil {
		s.Linux.Resources.CPU.Quota = nil
	}
	return s
}

// List returns the ids of the instances in the namespace that carry this
// runtime's labels, sorted: after a crash, the agent destroys those it does
// not know.
func (r *Runtime) List(ctx context.Context) ([]string, error) {
	filter := []string{"labels." + strconv.Quote(LabelRole) + "==" + strconv.Quote(RoleInstance)}
	for k, v := range r.labels {
		filter = append(filter, "labels."+strconv.Quote(k)+"=="+strconv.Quote(v))
	}
	containers, err := r.client.Containers(r.ctx(ctx), strings.Join(filter, ","))
	if err != nil {
		return nil, fmt.Errorf("list instances: %w", err)
	}
	ids := make([]string, 0, len(containers))
	for _, c := range containers {
		ids = append(ids, c.ID())
	}
	sort.Strings(ids)
	return ids, nil
}
