package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"golang.org/x/sync/errgroup"

	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/image"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/sandbox"
	"github.com/ember-run/ember/internal/testenv"
)

var (
	daemon    *testenv.ContainerdDaemon
	testImage string // instance image with testdata/testinit as ember-init
	binDir    string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	binDir, err = os.MkdirTemp("", "ember-sandbox-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(binDir)
	daemon, err = testenv.StartContainerd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := daemon.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop containerd:", err)
		}
	}()
	initBin := filepath.Join(binDir, "testinit")
	if err := testenv.Build("hostagent/sandbox/testdata/testinit", initBin); err != nil {
		fmt.Fprintln(os.Stderr, "build testinit:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testImage, err = image.Ensure(ctx, daemon.Client, daemon.Namespace, initBin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func newRuntime(t *testing.T, img string, opts ...sandbox.Option) *sandbox.Runtime {
	t.Helper()
	opts = append([]sandbox.Option{sandbox.WithGrace(2 * time.Second),
		sandbox.WithLabels(map[string]string{"ember.agent": "test-" + strings.ReplaceAll(t.Name(), "/", "_")})}, opts...)
	r, err := sandbox.New(daemon.Client, daemon.Namespace, img, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func instanceSpec(t *testing.T, id string) sandbox.InstanceSpec {
	dir := t.TempDir()
	// The mapped root must traverse to the bind-mount sources.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return sandbox.InstanceSpec{
		ID:        id,
		Class:     "m256",
		MemoryMB:  256,
		SocketDir: filepath.Join(dir, "sock"),
		CodeDir:   filepath.Join(dir, "code"),
		LogPath:   filepath.Join(dir, "logs", "instance.log"),
		Env:       []string{"EMBER_INSTANCE_ID=" + id},
	}
}

// dialInit waits (up to 10s) for the instance's socket and connects.
func dialInit(t *testing.T, socketDir string) *net.UnixConn {
	t.Helper()
	path := filepath.Join(socketDir, initproto.SocketName)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("init socket %s never answered: %v", path, err)
		}
		time.Sleep(5 * time.Millisecond) // polling for a socket a starting process creates
	}
}

// request sends one request (with fds) to testinit and returns its answer.
func request(t *testing.T, socketDir, req string, fds []int) string {
	t.Helper()
	c := dialInit(t, socketDir)
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var oob []byte
	if len(fds) > 0 {
		oob = syscall.UnixRights(fds...)
	}
	if _, _, err := c.WriteMsgUnix([]byte(req), oob, nil); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func statusField(t *testing.T, pid uint32, field string) string {
	t.Helper()
	for _, line := range strings.Split(readTrim(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

func TestInstanceIsolationAndChildCgroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := newRuntime(t, testImage)
	id := fmt.Sprintf("t%d-m256-iso", os.Getpid())
	spec := instanceSpec(t, id)
	if err := os.MkdirAll(spec.CodeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spec.CodeDir, "hello.txt"), []byte("from host"), 0o644); err != nil {
		t.Fatal(err)
	}
	inst, err := rt.Create(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Destroy(context.Background(), id) })
	if inst.ID != id || inst.Pid == 0 || inst.CgroupPath != "/ember/"+id {
		t.Fatalf("instance %+v", inst)
	}

	// From inside.
	rep := request(t, spec.SocketDir, "report", nil)
	for _, want := range []string{
		"hostname=" + id, "uid=0", "rootfs_write_erofs=true", "tmp_writable=true",
		"code_write_erofs=true", "interfaces=lo\n", "code=from host",
		// The instance's seccomp profile lists the x86-64 table alone: a
		// call of the i386 table (through int $0x80) or of the x32 table
		// kills the thread that makes it.
		"compat_syscall=thread-killed", "x32_syscall=thread-killed",
	} {
		if !strings.Contains(rep, want+"\n") && !strings.Contains(rep, want) {
			t.Errorf("inside report lacks %q:\n%s", want, rep)
		}
	}

	// From the host.
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(spec.SocketDir, initproto.SocketName), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != sandbox.DefaultHostID {
		t.Errorf("socket owned by host uid %d, want %d (the mapped root)", st.Uid, sandbox.DefaultHostID)
	}
	if got := statusField(t, inst.Pid, "NoNewPrivs"); got != "1" {
		t.Errorf("NoNewPrivs = %s", got)
	}
	if got := statusField(t, inst.Pid, "Seccomp"); got != "2" {
		t.Errorf("Seccomp = %s, want 2 (filter)", got)
	}
	const wantCaps = 1<<21 | 1<<12 | 1<<8 | 1<<7 | 1<<6 | 1<<5 // SYS_ADMIN, NET_ADMIN, SETPCAP, SETUID, SETGID, KILL
	for _, f := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if got := statusField(t, inst.Pid, f); got != fmt.Sprintf("%016x", wantCaps) {
			t.Errorf("%s = %s, want %016x", f, got, wantCaps)
		}
	}
	if got := strings.Fields(readTrim(t, fmt.Sprintf("/proc/%d/uid_map", inst.Pid))); strings.Join(got, " ") != "0 100000 65536" {
		t.Errorf("uid_map = %v", got)
	}
	if got := statusField(t, inst.Pid, "Uid"); !strings.HasPrefix(got, "100000\t") {
		t.Errorf("host Uid = %q, want 100000", got)
	}
	for file, want := range map[string]string{
		"memory/ember/" + id + "/memory.limit_in_bytes": fmt.Sprint(256 << 20),
		// 256/1769 vCPU for the function + 0.2 for ember-init, per 10 ms.
		"cpu/ember/" + id + "/cpu.cfs_quota_us":  "3447",
		"cpu/ember/" + id + "/cpu.cfs_period_us": "10000",
		"cpu/ember/" + id + "/cpu.shares":        fmt.Sprint(256 * 1024 / 1769),
		"pids/ember/" + id + "/pids.max":         "256",
	} {
		if got := readTrim(t, filepath.Join(cgroup.Root, file)); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(cgroup.Root, "memory/ember", id, "memory.memsw.limit_in_bytes")); err == nil {
		if got := readTrim(t, filepath.Join(cgroup.Root, "memory/ember", id, "memory.memsw.limit_in_bytes")); got != fmt.Sprint(256<<20) {
			t.Errorf("memsw limit = %s", got)
		}
	}
	if got := readTrim(t, fmt.Sprintf("/proc/%d/cgroup", inst.Pid)); !strings.Contains(got, "0::/ember/"+id+"\n") && !strings.HasSuffix(got, "0::/ember/"+id) {
		t.Errorf("instance not in cgroup2 /ember/%s:\n%s", id, got)
	}
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	instNet, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", inst.Pid))
	if hostNet == instNet || instNet == "" {
		t.Errorf("instance shares the host network namespace (%s)", instNet)
	}

	// A child cgroup made on the host and handed over as fds: the init
	// starts a process (as uid 1000) straight into it.
	child, err := cgroup.Create(inst.CgroupPath, "fn1", rt.HostRootUID(), cgroup.Limits{MemoryBytes: 128 << 20, PidsMax: 64})
	if err != nil {
		t.Fatal(err)
	}
	fds, names := child.FDs()
	out := request(t, spec.SocketDir, "spawn "+strings.Join(names, ","), fds)
	child.CloseFDs()
	for _, want := range []string{"0::/ember/" + id + "/fn1", ":memory:/ember/" + id + "/fn1", ":pids:/ember/" + id + "/fn1",
		":cpu:/ember/" + id + "/fn1", ":cpuacct:/ember/" + id + "/fn1"} {
		if !strings.Contains(out, want) {
			t.Errorf("child's /proc/self/cgroup lacks %q:\n%s", want, out)
		}
	}
	if cpu, err := child.CPUUsage(); err != nil || cpu <= 0 {
		t.Errorf("child CPUUsage = %v, %v", cpu, err)
	}
	if err := child.Remove(); err != nil {
		t.Errorf("remove child cgroup: %v", err)
	}

	ids, err := rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || ids[0] != id {
		t.Errorf("List = %v, want [%s]", ids, id)
	}
	other := newRuntime(t, testImage, sandbox.WithLabels(map[string]string{"ember.agent": "someone-else"}))
	if ids, err := other.List(ctx); err != nil || len(ids) != 0 {
		t.Errorf("another agent's List = %v, %v; want none", ids, err)
	}

	start := time.Now()
	if err := rt.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Destroy took %v: SIGTERM should have ended testinit before the grace", d)
	}
	assertGone(t, rt, id)
	log := readTrim(t, spec.LogPath)
	for _, want := range []string{"testinit up " + id, "testinit got SIGTERM"} {
		if !strings.Contains(log, want) {
			t.Errorf("instance log lacks %q:\n%s", want, log)
		}
	}
	if err := rt.Destroy(ctx, id); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func assertGone(t *testing.T, rt *sandbox.Runtime, id string) {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), daemon.Namespace)
	if _, err := daemon.Client.LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("container %s still exists: %v", id, err)
	}
	snaps := daemon.Client.SnapshotService("overlayfs")
	if _, err := snaps.Stat(ctx, id); !errdefs.IsNotFound(err) {
		t.Errorf("snapshot %s still exists: %v", id, err)
	}
	for _, h := range []string{"unified", "memory", "cpu", "pids"} {
		if _, err := os.Stat(filepath.Join(cgroup.Root, h, "ember", id)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cgroup %s/ember/%s still exists: %v", h, id, err)
		}
	}
	ids, err := rt.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, got := range ids {
		if got == id {
			t.Errorf("List still has %s", id)
		}
	}
}

func TestDestroyMissingIsSuccess(t *testing.T) {
	rt := newRuntime(t, testImage)
	if err := rt.Destroy(context.Background(), "never-created"); err != nil {
		t.Fatal(err)
	}
}

func TestDestroyKillsInitIgnoringSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// testinit ignores SIGTERM here: only SIGKILL after the grace ends it.
	rt := newRuntime(t, testImage, sandbox.WithGrace(300*time.Millisecond))
	id := fmt.Sprintf("t%d-m128-kill", os.Getpid())
	spec := instanceSpec(t, id)
	spec.MemoryMB = 128
	spec.Env = append(spec.Env, "EMBER_TEST_IGNORE_TERM=1")
	inst, err := rt.Create(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = request(t, spec.SocketDir, "report", nil) // running
	if err := syscall.Kill(int(inst.Pid), 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := rt.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("Destroy took %v, less than the grace: SIGTERM should not have ended it", d)
	}
	assertGone(t, rt, id)
}

func TestCreateRejectsInvalidSpec(t *testing.T) {
	rt := newRuntime(t, testImage)
	for _, spec := range []sandbox.InstanceSpec{
		{},
		{ID: "a/b", MemoryMB: 1, SocketDir: "/x", CodeDir: "/y", LogPath: "/z"},
		{ID: "ok", MemoryMB: 0, SocketDir: "/x", CodeDir: "/y", LogPath: "/z"},
		{ID: "ok", MemoryMB: 128},
	} {
		if _, err := rt.Create(context.Background(), spec, nil); err == nil {
			t.Errorf("Create(%+v) succeeded", spec)
		}
	}
}

// TestCreateDestroyLatency measures 10 create (to started) and destroy
// cycles with and without a user namespace and logs the medians.
func TestCreateDestroyLatency(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []sandbox.Option
	}{
		{"userns", nil},
		{"no-userns", []sandbox.Option{sandbox.WithoutUserNamespace()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rt := newRuntime(t, testImage, tc.opts...)
			var creates, readies, destroys []time.Duration
			for i := 0; i < 10; i++ {
				id := fmt.Sprintf("t%d-lat-%s-%d", os.Getpid(), tc.name, i)
				spec := instanceSpec(t, id)
				start := time.Now()
				if _, err := rt.Create(ctx, spec, nil); err != nil {
					t.Fatal(err)
				}
				creates = append(creates, time.Since(start))
				c := dialInit(t, spec.SocketDir)
				readies = append(readies, time.Since(start))
				c.Close()
				start = time.Now()
				if err := rt.Destroy(ctx, id); err != nil {
					t.Fatal(err)
				}
				destroys = append(destroys, time.Since(start))
			}
			t.Logf("%s: create median %v, create to socket median %v, destroy median %v (n=10)",
				tc.name, median(creates), median(readies), median(destroys))
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

// TestConcurrentCreateFreshImage starts instances of a never-used image at
// once, each with a host uid range of its own: they start, and no two
// share a host uid.
func TestConcurrentCreateFreshImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	orig, err := os.ReadFile(filepath.Join(binDir, "testinit"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "testinit-padded")
	// Trailing bytes leave the ELF runnable and change the image tag.
	if err := os.WriteFile(bin, append(orig, []byte(t.Name())...), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := image.Ensure(ctx, daemon.Client, daemon.Namespace, bin)
	if err != nil {
		t.Fatal(err)
	}
	if img == testImage {
		t.Fatal("padded init kept the image tag")
	}
	rt := newRuntime(t, img)
	const n = 4
	specs := make([]sandbox.InstanceSpec, n)
	for i := range specs {
		specs[i] = instanceSpec(t, fmt.Sprintf("t%d-conc-%d", os.Getpid(), i))
		specs[i].HostUID = uint32(sandbox.DefaultHostID + (i+1)*rt.IDRange())
	}
	var g errgroup.Group
	insts := make([]sandbox.Instance, n)
	for i, s := range specs {
		g.Go(func() (err error) {
			insts[i], err = rt.Create(ctx, s, nil)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		for _, s := range specs {
			_ = rt.Destroy(ctx, s.ID)
		}
		t.Fatal(err)
	}
	for i, s := range specs {
		if rep := request(t, s.SocketDir, "report", nil); !strings.Contains(rep, "hostname="+s.ID) {
			t.Errorf("instance %s report:\n%s", s.ID, rep)
		}
		want := fmt.Sprintf("0 %d %d", s.HostUID, rt.IDRange())
		if got := strings.Fields(readTrim(t, fmt.Sprintf("/proc/%d/uid_map", insts[i].Pid))); strings.Join(got, " ") != want {
			t.Errorf("instance %s uid_map = %v, want %s", s.ID, got, want)
		}
	}
	ids, err := rt.List(ctx)
	if err != nil || len(ids) != n {
		t.Errorf("List = %v, %v; want %d instances", ids, err, n)
	}
	for _, s := range specs {
		g.Go(func() error { return rt.Destroy(ctx, s.ID) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		assertGone(t, rt, s.ID)
	}
}

// An instance booted with BootMilliCPU has that quota until its caller
// puts its own back.
func TestBootQuota(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := newRuntime(t, testImage)
	id := fmt.Sprintf("t%d-m256-boot", os.Getpid())
	spec := instanceSpec(t, id)
	spec.BootMilliCPU = 1200
	if _, err := rt.Create(ctx, spec, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Destroy(context.Background(), id) })
	quota := filepath.Join(cgroup.Root, "cpu", sandbox.CgroupParent, id, "cpu.cfs_quota_us")
	if got := readTrim(t, quota); got != "12000" {
		t.Fatalf("booting quota %s, want 12000", got)
	}
	if err := cgroup.SetCPUQuota(sandbox.CgroupParent+"/"+id, sandbox.QuotaUs(sandbox.InstanceVCPU(256, 0))); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, quota); got != "3447" {
		t.Fatalf("quota put back %s, want 3447", got)
	}
}

// TestDefineThenCreate: an instance Define made is listed and not running;
// Create with the same spec starts that very container (its creation time
// kept), with another spec makes it again; Destroy removes one never
// started.
func TestDefineThenCreate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rt := newRuntime(t, testImage)
	nsCtx := namespaces.WithNamespace(ctx, daemon.Namespace)
	createdAt := func(id string) time.Time {
		t.Helper()
		c, err := daemon.Client.LoadContainer(nsCtx, id)
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Info(nsCtx)
		if err != nil {
			t.Fatal(err)
		}
		return info.CreatedAt
	}
	running := func(id string) bool {
		t.Helper()
		c, err := daemon.Client.LoadContainer(nsCtx, id)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Task(nsCtx, nil)
		return err == nil
	}
	for _, same := range []bool{true, false} {
		id := fmt.Sprintf("t%d-def-%v", os.Getpid(), same)
		spec := instanceSpec(t, id)
		if err := rt.Define(ctx, spec); err != nil {
			t.Fatal(err)
		}
		ids, err := rt.List(ctx)
		if err != nil || !slices.Contains(ids, id) {
			t.Fatalf("List = %v, %v: the defined instance missing", ids, err)
		}
		if running(id) {
			t.Fatal("a defined instance runs")
		}
		defined := createdAt(id)
		if !same {
			spec.PidsLimit = 300 // what the boot asks for differs
		}
		if _, err := rt.Create(ctx, spec, nil); err != nil {
			t.Fatal(err)
		}
		c := dialInit(t, spec.SocketDir)
		c.Close()
		if got := createdAt(id); got.Equal(defined) != same {
			t.Errorf("same spec %v: container created at %v, defined at %v", same, got, defined)
		}
		if err := rt.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	id := fmt.Sprintf("t%d-def-gone", os.Getpid())
	if err := rt.Define(ctx, instanceSpec(t, id)); err != nil {
		t.Fatal(err)
	}
	if err := rt.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	if ids, err := rt.List(ctx); err != nil || slices.Contains(ids, id) {
		t.Fatalf("List after Destroy = %v, %v", ids, err)
	}
}

// TestSameSpec: a container made from a spec holds the runtime spec the
// same spec makes again, whatever the boot's CPU quota; another limit, or
// another sandbox from the runtime (its user namespace's size, as another
// build or configuration would make), is not the same.
func TestSameSpec(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt := newRuntime(t, testImage)
	id := fmt.Sprintf("t%d-same-spec", os.Getpid())
	spec := instanceSpec(t, id)
	spec.BootMilliCPU = 1500 // a boot's boost
	if err := rt.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Destroy(context.Background(), id) })
	unboosted := spec
	unboosted.BootMilliCPU = 0
	fewerPids := unboosted
	fewerPids.PidsLimit = 64
	other := newRuntime(t, testImage, sandbox.WithUserNamespace(sandbox.DefaultHostID, sandbox.DefaultIDRange/2))
	for _, c := range []struct {
		name string
		rt   *sandbox.Runtime
		spec sandbox.InstanceSpec
		want bool
	}{
		{"the same spec", rt, spec, true},
		{"without the boot's boost", rt, unboosted, true},
		{"another pids limit", rt, fewerPids, false},
		{"a smaller user namespace", other, unboosted, false},
	} {
		got, err := c.rt.SameSpec(ctx, id, c.spec)
		if err != nil || got != c.want {
			t.Errorf("%s: SameSpec = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if _, err := rt.SameSpec(ctx, id+"-missing", spec); err == nil {
		t.Error("SameSpec of a missing instance: no error")
	}
}
