package cgroup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/hostagent/initproto"
)

const (
	// Root is where the cgroup hierarchies are mounted.
	Root = "/sys/fs/cgroup"
	// Unified names the cgroup2 hierarchy in Path and RemoveTree; it is
	// mounted at Root/unified in the hybrid layout.
	Unified = "unified"
)

// Controllers are the cgroup v1 controllers a child gets a directory in.
var Controllers = []string{"memory", "cpu", "cpuacct", "pids"}

// MinShares and MaxShares bound cpu.shares (the kernel's range).
const (
	MinShares = 2
	MaxShares = 262144
)

// ErrUnsupported is returned on a host whose cgroup layout is not the
// v1 / hybrid one.
var ErrUnsupported = errors.New("unsupported cgroup layout")

// Limits are a child's own limits, below its instance's. Zero means none.
type Limits struct {
	// MemoryBytes is memory.limit_in_bytes (and memory.memsw.limit_in_bytes
	// where swap accounting exists).
	MemoryBytes int64
	// PidsMax is pids.max.
	PidsMax int64
	// CPUShares is cpu.shares (relative weight among the instance's
	// containers; the instance's CFS quota still bounds them all).
	CPUShares uint64
	// CPUQuotaUs per CPUPeriodUs is the child's CFS bandwidth (both or neither).
	CPUQuotaUs, CPUPeriodUs int64
	// CPUBurstUs lets unused quota carry over (at most CPUQuotaUs), so a
	// sporadic burst runs at once while the sustained rate stays bounded.
	// Written only where the kernel has cpu.cfs_burst_us (5.14+).
	CPUBurstUs int64
}

// Child is one container's cgroup: a directory per hierarchy, and open
// handles to it until CloseFDs.
type Child struct {
	name  string
	paths map[string]string // controller (or Unified) -> directory
	inode uint64

	mu      sync.Mutex
	fds     []int
	fdNames []string
}

// Create makes the cgroup of container name inside the instance whose runc
// cgroupsPath is instanceCgroupPath (e.g. "/ember/<id>"), applies limits,
// hands the directories' membership files to ownerUID (the instance's mapped
// root, also used as gid), and opens the fds FDs returns. The instance's
// cgroup must exist (its task created). On error nothing is left behind.
func Create(instanceCgroupPath, name string, ownerUID int, limits Limits) (*Child, error) {
	if err := checkNames(instanceCgroupPath, name); err != nil {
		return nil, err
	}
	if ownerUID < 0 {
		return nil, fmt.Errorf("cgroup: owner uid %d is negative", ownerUID)
	}
	if _, err := os.Stat(filepath.Join(Root, Unified, "cgroup.controllers")); err != nil {
		return nil, fmt.Errorf("cgroup: no cgroup2 hierarchy at %s: %w", filepath.Join(Root, Unified), ErrUnsupported)
	}
	c := &Child{name: name, paths: map[string]string{}}
	for _, ctrl := range append([]string{Unified}, Controllers...) {
		parent := filepath.Join(Root, ctrl, instanceCgroupPath)
		if _, err := os.Stat(parent); err != nil {
			c.cleanup()
			return nil, fmt.Errorf("cgroup: instance cgroup %s: %w", parent, err)
		}
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			c.cleanup()
			return nil, fmt.Errorf("cgroup: create %s: %w", dir, err)
		}
		c.paths[ctrl] = dir
	}
	if err := c.setup(ownerUID, limits); err != nil {
		c.cleanup()
		return nil, err
	}
	return c, nil
}

// Open returns the existing cgroup of container name inside the instance
// at instanceCgroupPath, as Create made it: what an agent that restarted
// needs to measure and remove a container it reattached to. It opens no
// fds (the container's process already runs in it).
func Open(instanceCgroupPath, name string) (*Child, error) {
	if err := checkNames(instanceCgroupPath, name); err != nil {
		return nil, err
	}
	c := &Child{name: name, paths: map[string]string{}}
	for _, ctrl := range append([]string{Unified}, Controllers...) {
		dir := filepath.Join(Root, ctrl, instanceCgroupPath, name)
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("cgroup: open %s: %w", dir, err)
		}
		c.paths[ctrl] = dir
	}
	var st unix.Stat_t
	if err := unix.Stat(c.paths[Unified], &st); err != nil {
		return nil, fmt.Errorf("cgroup: stat %s: %w", c.paths[Unified], err)
	}
	c.inode = st.Ino
	return c, nil
}

// checkNames validates a child's place: an absolute, clean instance
// cgroup path and one path element.
func checkNames(instanceCgroupPath, name string) error {
	if !isCgroupPath(instanceCgroupPath) {
		return fmt.Errorf("cgroup: instance cgroup path %q must be absolute and clean", instanceCgroupPath)
	}
	if name == "" || !filepath.IsLocal(name) || strings.Contains(name, "/") {
		return fmt.Errorf("cgroup: child name %q must be one path element", name)
	}
	return nil
}

func (c *Child) setup(owner int, limits Limits) error {
	if limits.MemoryBytes > 0 {
		v := strconv.FormatInt(limits.MemoryBytes, 10)
		if err := writeFile(c.paths["memory"], "memory.limit_in_bytes", v); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(c.paths["memory"], "memory.memsw.limit_in_bytes")); err == nil {
			if err := writeFile(c.paths["memory"], "memory.memsw.limit_in_bytes", v); err != nil {
				return err
			}
		}
	}
	if limits.PidsMax > 0 {
		if err := writeFile(c.paths["pids"], "pids.max", strconv.FormatInt(limits.PidsMax, 10)); err != nil {
			return err
		}
	}
	if limits.CPUShares > 0 {
		if err := writeFile(c.paths["cpu"], "cpu.shares", strconv.FormatUint(limits.CPUShares, 10)); err != nil {
			return err
		}
	}
	if limits.CPUQuotaUs > 0 && limits.CPUPeriodUs > 0 {
		// Period first: the quota is checked against the parent's bandwidth
		// at the period in force.
		if err := writeFile(c.paths["cpu"], "cpu.cfs_period_us", strconv.FormatInt(limits.CPUPeriodUs, 10)); err != nil {
			return err
		}
		if err := writeFile(c.paths["cpu"], "cpu.cfs_quota_us", strconv.FormatInt(limits.CPUQuotaUs, 10)); err != nil {
			return err
		}
		burst := filepath.Join(c.paths["cpu"], "cpu.cfs_burst_us")
		if _, err := os.Stat(burst); limits.CPUBurstUs > 0 && err == nil {
			if err := writeFile(c.paths["cpu"], "cpu.cfs_burst_us", strconv.FormatInt(min(limits.CPUBurstUs, limits.CPUQuotaUs), 10)); err != nil {
				return err
			}
		}
	}
	for ctrl, dir := range c.paths {
		files := []string{"", "tasks", "cgroup.procs"}
		if ctrl == Unified {
			files = []string{"", "cgroup.procs", "cgroup.threads"}
		}
		for _, f := range files {
			p := filepath.Join(dir, f)
			if err := os.Lchown(p, owner, owner); err != nil {
				return fmt.Errorf("cgroup: chown %s: %w", p, err)
			}
		}
	}

	var st unix.Stat_t
	if err := unix.Stat(c.paths[Unified], &st); err != nil {
		return fmt.Errorf("cgroup: stat %s: %w", c.paths[Unified], err)
	}
	c.inode = st.Ino
	fd, err := unix.Open(c.paths[Unified], unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cgroup: open %s: %w", c.paths[Unified], err)
	}
	c.fds, c.fdNames = append(c.fds, fd), append(c.fdNames, initproto.FDCgroup2)
	for _, ctrl := range Controllers {
		p := filepath.Join(c.paths[ctrl], "tasks")
		fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("cgroup: open %s: %w", p, err)
		}
		c.fds, c.fdNames = append(c.fds, fd), append(c.fdNames, initproto.FDTasksPrefix+ctrl)
	}
	return nil
}

// cleanup undoes a failed Create.
func (c *Child) cleanup() {
	c.CloseFDs()
	for _, dir := range c.paths {
		_ = unix.Rmdir(dir)
	}
}

// SetParentShares makes cgroupPath (e.g. "/ember", where runc puts
// instances; its parent must exist) in the cpu hierarchy if it is missing
// and sets its cpu.shares:
// the weight of everything below it, together, against the host's other
// cgroups and against each task of the root cgroup (1024 each). Limits of
// the cgroups below it are left alone.
func SetParentShares(cgroupPath string, shares uint64) error {
	if shares < MinShares || shares > MaxShares {
		return fmt.Errorf("cgroup: cpu.shares %d: want %d to %d", shares, MinShares, MaxShares)
	}
	if !isCgroupPath(cgroupPath) {
		return fmt.Errorf("cgroup: %q: want an absolute, clean cgroup path", cgroupPath)
	}
	cpu := filepath.Join(Root, "cpu")
	if _, err := os.Stat(filepath.Join(cpu, "cpu.shares")); err != nil {
		return fmt.Errorf("cgroup: no cgroup v1 cpu hierarchy at %s: %w", cpu, ErrUnsupported)
	}
	dir := filepath.Join(cpu, cgroupPath)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("cgroup: %w", err)
	}
	return writeFile(dir, "cpu.shares", strconv.FormatUint(shares, 10))
}

// SetCPUQuota sets the CFS quota (cpu.cfs_quota_us, at the period in
// force) of the instance whose runc cgroupsPath is cgroupPath: the agent
// lifts it while a container starts and puts it back afterwards. The
// kernel refuses a quota below one of the cgroup's children's: lower the
// children first.
func SetCPUQuota(cgroupPath string, quotaUs int64) error {
	if !isCgroupPath(cgroupPath) {
		return fmt.Errorf("cgroup: %q: want an absolute, clean cgroup path", cgroupPath)
	}
	return setQuota(filepath.Join(Root, "cpu", cgroupPath), quotaUs)
}

// SetCPUQuota sets the child's CFS quota (cpu.cfs_quota_us) after Create:
// its burst stays what Create gave it (at most the quota it made it with),
// so a quota raised and put back keeps it valid.
func (c *Child) SetCPUQuota(quotaUs int64) error { return setQuota(c.paths["cpu"], quotaUs) }

func setQuota(dir string, quotaUs int64) error {
	if quotaUs < 1000 {
		return fmt.Errorf("cgroup: CFS quota %d us: want at least 1000 (the kernel's floor)", quotaUs)
	}
	return writeFile(dir, "cpu.cfs_quota_us", strconv.FormatInt(quotaUs, 10))
}

// isCgroupPath reports whether p is an absolute, clean cgroup path below
// the root, such as runc's cgroupsPath of an instance.
func isCgroupPath(p string) bool {
	return strings.HasPrefix(p, "/") && filepath.Clean(p) == p && p != "/"
}

func writeFile(dir, file, value string) error {
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("cgroup: write %s: %w", p, err)
	}
	return nil
}

// FDs returns the open handles to send to ember-init with the start
// request, and their names (initproto.FDCgroup2, initproto.FDTasksPrefix +
// controller) in the same order. The Child keeps ownership: the caller must
// not close them, and calls CloseFDs once they are sent. After CloseFDs both
// are empty.
func (c *Child) FDs() (fds []int, names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.fds...), append([]string(nil), c.fdNames...)
}

// CloseFDs closes the handles; the cgroup itself stays. Idempotent.
func (c *Child) CloseFDs() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, fd := range c.fds {
		_ = unix.Close(fd)
	}
	c.fds, c.fdNames = nil, nil
}

// Name is the child's directory name.
func (c *Child) Name() string { return c.name }

// ID is the cgroup2 directory's inode, which is the cgroup id the kernel
// reports (bpf_get_current_cgroup_id) for the child's processes.
func (c *Child) ID() uint64 { return c.inode }

// Path is the child's directory in hierarchy ctrl (a v1 controller or
// Unified); "" for a hierarchy it has no directory in.
func (c *Child) Path(ctrl string) string { return c.paths[ctrl] }

// MemoryPeak is the most memory (memory.max_usage_in_bytes) the child used.
func (c *Child) MemoryPeak() (int64, error) {
	return readInt(filepath.Join(c.paths["memory"], "memory.max_usage_in_bytes"))
}

// CPUUsage is the CPU time (cpuacct.usage) the child's processes used.
func (c *Child) CPUUsage() (time.Duration, error) {
	ns, err := readInt(filepath.Join(c.paths["cpuacct"], "cpuacct.usage"))
	return time.Duration(ns), err
}

// OOMKills counts the processes the out-of-memory killer killed in the
// child (memory.oom_control's oom_kill); 0 if it cannot be read.
func (c *Child) OOMKills() int64 {
	b, err := os.ReadFile(filepath.Join(c.paths["memory"], "memory.oom_control"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// MemoryUsage is the memory (memory.usage_in_bytes) the child holds now.
func (c *Child) MemoryUsage() (int64, error) {
	return readInt(filepath.Join(c.paths["memory"], "memory.usage_in_bytes"))
}

// Freeze stops (on) or thaws every process of the child with cgroup2's
// freezer (cgroup.freeze). Frozen processes take no CPU and keep their
// memory; a fatal signal still ends them.
func (c *Child) Freeze(on bool) error {
	v := "0"
	if on {
		v = "1"
	}
	return writeFile(c.paths[Unified], "cgroup.freeze", v)
}

func readInt(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("cgroup: read %s: %w", p, err)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("cgroup: parse %s: %w", p, err)
	}
	return v, nil
}

// Remove closes the handles, SIGKILLs any process still in the child's
// cgroup2 directory, waits for them to leave (up to 5s) and removes the
// directories, including any sub-cgroups the instance made below them. A
// cgroup already gone is success.
//
// Only the cgroup2 membership is trusted for killing: a process is in its
// container's cgroup2 directory only if it was started into it, while a v1
// cgroup.procs also lists the spawner (ember-init) for as long as its
// discarded spawn thread has not yet exited.
func (c *Child) Remove() error {
	c.CloseFDs()
	var errs []error
	if dir, ok := c.paths[Unified]; ok {
		errs = append(errs, removeDir(dir, true, 5*time.Second))
	}
	for ctrl, dir := range c.paths {
		if ctrl != Unified {
			errs = append(errs, removeDir(dir, false, 5*time.Second))
		}
	}
	return errors.Join(errs...)
}

// RemoveTree removes cgroupPath (e.g. an instance's "/ember/<id>") and
// everything below it from the cgroup2 hierarchy and every v1 hierarchy
// mounted under Root, killing processes still inside first. It is the
// clean-up for an instance whose runtime left its cgroups behind. Missing
// directories are success.
func RemoveTree(cgroupPath string) error {
	if !isCgroupPath(cgroupPath) {
		return fmt.Errorf("cgroup: path %q must be absolute and clean", cgroupPath)
	}
	hierarchies, err := os.ReadDir(Root)
	if err != nil {
		return fmt.Errorf("cgroup: read %s: %w", Root, err)
	}
	errs := []error{removeDir(filepath.Join(Root, Unified, cgroupPath), true, 5*time.Second)}
	for _, h := range hierarchies {
		if !h.IsDir() || h.Name() == Unified {
			continue // cpu,cpuacct style symlinks point at a directory listed too
		}
		errs = append(errs, removeDir(filepath.Join(Root, h.Name(), cgroupPath), false, 5*time.Second))
	}
	return errors.Join(errs...)
}

// removeDir removes cgroup dir and its sub-cgroups, deepest first. With
// kill, it SIGKILLs the processes in a directory that is still populated.
func removeDir(dir string, kill bool, wait time.Duration) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cgroup: read %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			errs = append(errs, removeDir(filepath.Join(dir, e.Name()), kill, wait))
		}
	}
	deadline := time.Now().Add(wait)
	for {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return errors.Join(errs...)
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return errors.Join(append(errs, fmt.Errorf("cgroup: remove %s: %w", dir, err))...)
		}
		// Still populated: kill what is inside and retry once the kernel
		// has reaped it (a cgroup dies asynchronously after its last task).
		if kill {
			killAll(dir)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func killAll(dir string) {
	// cgroup.kill (Linux 5.14+) kills the whole subtree atomically, racing
	// no fork; reading cgroup.procs is the fallback.
	if err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0); err == nil {
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
