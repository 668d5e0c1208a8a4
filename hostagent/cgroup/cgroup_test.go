package cgroup_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/initproto"
)

// The main thread never runs a test goroutine, so the spawn goroutines'
// locked threads really exit (a locked main thread would be kept, wedged in
// the child's v1 cgroups), as ember-init does.
func init() { runtime.LockOSThread() }

// parentCgroup creates a stand-in instance cgroup in every hierarchy the
// package uses and removes it when t ends.
func parentCgroup(t *testing.T) string {
	t.Helper()
	p := fmt.Sprintf("/ember-cgtest-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	for _, ctrl := range append([]string{cgroup.Unified}, cgroup.Controllers...) {
		if err := os.Mkdir(filepath.Join(cgroup.Root, ctrl, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := cgroup.RemoveTree(p); err != nil {
			t.Errorf("remove test parent cgroup: %v", err)
		}
		if _, err := os.Stat(filepath.Join(cgroup.Root, "memory", p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("parent cgroup still there after RemoveTree: %v", err)
		}
	})
	return p
}

// spawnInto starts argv inside child the way ember-init does: a locked,
// discarded thread writes "0" to each v1 tasks fd, then forks with
// clone3(CLONE_INTO_CGROUP) into the cgroup2 directory.
func spawnInto(t *testing.T, child *cgroup.Child, argv []string, stdout *os.File) int {
	t.Helper()
	fds, names := child.FDs()
	type res struct {
		pid int
		err error
	}
	done := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		cg2 := -1
		for i, n := range names {
			switch {
			case n == initproto.FDCgroup2:
				cg2 = fds[i]
			case strings.HasPrefix(n, initproto.FDTasksPrefix):
				if _, err := unix.Write(fds[i], []byte("0")); err != nil {
					done <- res{err: fmt.Errorf("join %s: %w", n, err)}
					return
				}
			}
		}
		pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
			Files: []uintptr{0, stdout.Fd(), 2},
			Sys:   &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: cg2},
		})
		done <- res{pid, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.pid
}

func waitPid(t *testing.T, pid int) {
	t.Helper()
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("child exited with %v", ws)
	}
}

func TestChildCgroupJoinAndAccounting(t *testing.T) {
	parent := parentCgroup(t)
	const owner = 100000
	child, err := cgroup.Create(parent, "c1", owner, cgroup.Limits{MemoryBytes: 64 << 20, PidsMax: 32, CPUShares: 512,
		CPUQuotaUs: 2500, CPUPeriodUs: 10000, CPUBurstUs: 2500})
	if err != nil {
		t.Fatal(err)
	}

	// Limits and ownership.
	for file, want := range map[string]string{
		filepath.Join(child.Path("memory"), "memory.limit_in_bytes"): fmt.Sprint(64 << 20),
		filepath.Join(child.Path("pids"), "pids.max"):                "32",
		filepath.Join(child.Path("cpu"), "cpu.shares"):               "512",
		filepath.Join(child.Path("cpu"), "cpu.cfs_quota_us"):         "2500",
		filepath.Join(child.Path("cpu"), "cpu.cfs_period_us"):        "10000",
		filepath.Join(child.Path("cpu"), "cpu.cfs_burst_us"):         "2500", // this kernel has CFS burst
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("%s = %s, want %s", file, got, want)
		}
	}
	for _, p := range []string{child.Path("memory"), filepath.Join(child.Path("pids"), "tasks"),
		filepath.Join(child.Path(cgroup.Unified), "cgroup.procs")} {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != owner || st.Gid != owner {
			t.Errorf("%s owned by %d:%d, want %d", p, st.Uid, st.Gid, owner)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(child.Path("memory"), "memory.limit_in_bytes"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 {
		t.Errorf("limit file handed to uid %d: the instance could raise its own limit", st.Uid)
	}
	if err := unix.Stat(child.Path(cgroup.Unified), &st); err != nil {
		t.Fatal(err)
	}
	if child.ID() != st.Ino || child.ID() == 0 {
		t.Errorf("ID %d, cgroup2 inode %d", child.ID(), st.Ino)
	}
	fds, names := child.FDs()
	if len(fds) != 1+len(cgroup.Controllers) || len(names) != len(fds) || names[0] != initproto.FDCgroup2 {
		t.Fatalf("fds %v names %v", fds, names)
	}

	// A process started through the fds lands in every child cgroup and
	// is accounted there.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// Burn a little CPU and memory, then report the cgroups.
	script := `i=0; s=""; while [ $i -lt 20000 ]; do s="$s."; i=$((i+1)); done; cat /proc/self/cgroup`
	pid := spawnInto(t, child, []string{"/bin/busybox", "sh", "-c", script}, w)
	w.Close()
	var out bytes.Buffer
	if _, err := out.ReadFrom(r); err != nil {
		t.Fatal(err)
	}
	waitPid(t, pid)
	for _, ctrl := range cgroup.Controllers {
		want := fmt.Sprintf(":%s:%s/c1\n", ctrl, parent)
		if !strings.Contains(out.String(), want) {
			t.Errorf("/proc/self/cgroup lacks %q:\n%s", want, out.String())
		}
	}
	if want := fmt.Sprintf("0::%s/c1\n", parent); !strings.Contains(out.String(), want) {
		t.Errorf("/proc/self/cgroup lacks %q:\n%s", want, out.String())
	}
	cpu, err := child.CPUUsage()
	if err != nil || cpu <= 0 {
		t.Errorf("CPUUsage = %v, %v; want > 0", cpu, err)
	}
	peak, err := child.MemoryPeak()
	if err != nil || peak <= 0 {
		t.Errorf("MemoryPeak = %d, %v; want > 0", peak, err)
	}

	child.CloseFDs()
	if fds, _ := child.FDs(); len(fds) != 0 {
		t.Errorf("fds after CloseFDs: %v", fds)
	}
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	for _, ctrl := range append([]string{cgroup.Unified}, cgroup.Controllers...) {
		if _, err := os.Stat(child.Path(ctrl)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still exists after Remove: %v", child.Path(ctrl), err)
		}
	}
	if err := child.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

func TestRemoveKillsLeftoverProcesses(t *testing.T) {
	parent := parentCgroup(t)
	child, err := cgroup.Create(parent, "c2", 0, cgroup.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	pid := spawnInto(t, child, []string{"/bin/busybox", "sleep", "300"}, os.Stderr)
	exited := make(chan syscall.WaitStatus, 1)
	go func() {
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, 0, nil)
		exited <- ws
	}()
	if err := child.Remove(); err != nil {
		t.Fatal(err)
	}
	select {
	case ws := <-exited:
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("leftover process ended with %v, want SIGKILL", ws)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("leftover process still running after Remove")
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	parent := parentCgroup(t)
	for _, tc := range []struct{ parent, name string }{
		{"relative", "c"}, {"/", "c"}, {parent, ""}, {parent, "../x"}, {parent, "a/b"},
		{parent + "-missing", "c"},
	} {
		if c, err := cgroup.Create(tc.parent, tc.name, 0, cgroup.Limits{}); err == nil {
			_ = c.Remove()
			t.Errorf("Create(%q, %q) succeeded", tc.parent, tc.name)
		}
	}
	// A duplicate fails and leaves the first intact.
	c, err := cgroup.Create(parent, "dup", 0, cgroup.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cgroup.Create(parent, "dup", 0, cgroup.Limits{}); err == nil {
		t.Fatal("duplicate Create succeeded")
	}
	if _, err := os.Stat(c.Path("memory")); err != nil {
		t.Fatalf("failed duplicate removed the first child: %v", err)
	}
	if err := c.Remove(); err != nil {
		t.Fatal(err)
	}
}

// TestSetParentShares: the instances' parent is made when missing and its
// weight set, then changed; a bad weight or path is refused.
func TestSetParentShares(t *testing.T) {
	p := fmt.Sprintf("/ember-cgtest-%d-shares", os.Getpid())
	dir := filepath.Join(cgroup.Root, "cpu", p)
	t.Cleanup(func() {
		if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	for _, shares := range []uint64{8192, 2048} {
		if err := cgroup.SetParentShares(p, shares); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "cpu.shares"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != fmt.Sprint(shares) {
			t.Fatalf("cpu.shares = %s, want %d", got, shares)
		}
	}
	for _, bad := range []struct {
		path   string
		shares uint64
	}{{p, 1}, {p, 262145}, {"ember", 1024}, {"/ember/../x", 1024}, {"/", 1024}, {"//ember", 1024}, {"/ember/", 1024}} {
		if err := cgroup.SetParentShares(bad.path, bad.shares); err == nil {
			t.Errorf("SetParentShares(%q, %d) = nil, want an error", bad.path, bad.shares)
		}
	}
}

// A start's boost: the instance's quota lifted, then its child's; put back
// the other way round, as the kernel refuses a parent quota below a
// child's. The child keeps its burst throughout.
func TestSetCPUQuota(t *testing.T) {
	parent := parentCgroup(t)
	pdir := filepath.Join(cgroup.Root, "cpu", parent)
	if err := os.WriteFile(filepath.Join(pdir, "cpu.cfs_period_us"), []byte("10000"), 0); err != nil { // as runc sets it
		t.Fatal(err)
	}
	if err := cgroup.SetCPUQuota(parent, 7800); err != nil {
		t.Fatal(err)
	}
	child, err := cgroup.Create(parent, "c1", 100000, cgroup.Limits{CPUQuotaUs: 5800, CPUPeriodUs: 10000, CPUBurstUs: 5800})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = child.Remove(); child.CloseFDs() })
	read := func(dir, file string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if err := cgroup.SetCPUQuota(parent, 22000); err != nil {
		t.Fatal(err)
	}
	if err := child.SetCPUQuota(20000); err != nil {
		t.Fatal(err)
	}
	if p, c := read(pdir, "cpu.cfs_quota_us"), read(child.Path("cpu"), "cpu.cfs_quota_us"); p != "22000" || c != "20000" {
		t.Fatalf("lifted quotas: instance %s, child %s", p, c)
	}
	if err := cgroup.SetCPUQuota(parent, 7800); err == nil {
		t.Fatal("the instance's quota went below its child's")
	}
	if err := child.SetCPUQuota(5800); err != nil {
		t.Fatal(err)
	}
	if err := cgroup.SetCPUQuota(parent, 7800); err != nil {
		t.Fatal(err)
	}
	if p, c, b := read(pdir, "cpu.cfs_quota_us"), read(child.Path("cpu"), "cpu.cfs_quota_us"), read(child.Path("cpu"), "cpu.cfs_burst_us"); p != "7800" || c != "5800" || b != "5800" {
		t.Fatalf("quotas put back: instance %s, child %s (burst %s)", p, c, b)
	}
	for _, bad := range []struct {
		path  string
		quota int64
	}{{"ember", 5000}, {"/ember/../x", 5000}, {"/", 5000}, {parent, 999}} {
		if err := cgroup.SetCPUQuota(bad.path, bad.quota); err == nil {
			t.Errorf("SetCPUQuota(%q, %d) = nil, want an error", bad.path, bad.quota)
		}
	}
}
