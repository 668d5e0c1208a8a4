package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/hostagent/seccomp"
)

// Arg is the argument that starts a binary with the shim in it (ember-shim,
// or ember-init without one beside it) as a container shim. Its version
// changes with Spec or Status: a shim of another build than the ember-init
// that starts it refuses to run instead of dropping what it does not know.
const Arg = "container-shim/1"

// Spec is what the shim sets up, sent on its fd 3 as JSON.
type Spec struct {
	// CodeSrc is bind-mounted read-only at TaskDir, where Bootstrap runs.
	CodeSrc, TaskDir, Bootstrap string
	// TmpDir and ShmDir get fresh tmpfs mounts of these sizes.
	TmpDir  string
	TmpSize int64
	ShmDir  string
	ShmSize int64
	// Hide are directories covered with an empty read-only tmpfs: every
	// version's code, the agent socket, the instance's logs.
	Hide     []string
	UID, GID int
	Env      []string
	Hostname string
	// State are the tenant's resources bound read-write at their paths
	// (under /mnt, made for them); files the function creates there are
	// shared with its other containers (umask 0).
	State []Bind
}

// Bind is a bind mount of Src (a directory of the instance) at Dst.
type Bind struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
}

// Status is the shim's report on fd 4 of how the function ended.
type Status struct {
	// Exit is the bootstrap's exit status, or -1 if a signal ended it.
	Exit int `json:"exit"`
	// Signal is the signal that ended the bootstrap, 0 if none.
	Signal int `json:"signal,omitempty"`
	// Error is set when the shim could not start the bootstrap; Exec
	// says the failure was the exec itself (the package's fault).
	Error string `json:"error,omitempty"`
	Exec  bool   `json:"exec,omitempty"`
}

// IsShim reports whether this process was started as a container shim:
// a binary that can be one (ember-shim, ember-init, tests that run initd in
// process) must then call Run before anything else.
func IsShim() bool { return len(os.Args) > 1 && os.Args[1] == Arg }

// RefuseOtherVersion ends a process started as a shim of another protocol
// version (an ember-shim and an ember-init of different builds): it reports
// a sandbox error on the status pipe, which ember-init answers the
// invocation with (Ember.SandboxError, not the function's failure), and
// exits. It returns when the process was not started as a shim at all.
func RefuseOtherVersion() {
	if len(os.Args) < 2 || !strings.HasPrefix(os.Args[1], "container-shim") || os.Args[1] == Arg {
		return
	}
	st := Status{Exit: -1, Error: fmt.Sprintf("ember-shim speaks %s, ember-init asked for %s: install both from one build", Arg, os.Args[1])}
	_ = json.NewEncoder(os.NewFile(4, "status")).Encode(st)
	os.Exit(1)
}

// Run is the container shim: PID 1 of the container's pid namespace,
// root of the instance's user namespace, in the container's own mount,
// IPC, UTS and network namespaces. It mounts the container's view (a fresh
// /proc with the kernel's sensitive files masked, the code read-only at
// /var/task, a private /tmp and /dev/shm, the instance's other directories
// hidden), then runs the bootstrap as the container's own uid with no
// capabilities, no_new_privs and the function seccomp filter, forwards
// SIGTERM, reaps every orphan, and exits once the bootstrap has, reporting
// its status. Exiting ends every other process of the pid namespace. The
// bootstrap leads its own session there (what CRIU needs to checkpoint it
// alone); on SIGUSR1 from the agent the shim survives the bootstrap's
// checkpoint (see below). It never returns.
func Run() {
	runtime.LockOSThread()
	// The spec and status pipes are the shim's alone: the bootstrap must
	// not inherit them (with the status pipe it could forge its exit).
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	status := os.NewFile(4, "status")
	report := func(st Status) {
		_ = json.NewEncoder(status).Encode(st)
	}
	var spec Spec
	dec := json.NewDecoder(os.NewFile(3, "spec"))
	dec.DisallowUnknownFields() // a field this shim does not apply is an error
	if err := dec.Decode(&spec); err != nil {
		report(Status{Exit: -1, Error: "read spec: " + err.Error()})
		os.Exit(1)
	}
	if err := mounts(spec); err != nil {
		report(Status{Exit: -1, Error: err.Error()})
		os.Exit(1)
	}
	if err := dropPrivileges(); err != nil {
		report(Status{Exit: -1, Error: err.Error()})
		os.Exit(1)
	}
	// The shim keeps its own capabilities (it must signal the function,
	// which runs as another uid) but the bounding set is empty and the
	// filter is loaded: neither it nor anything it starts can gain more.
	if err := seccomp.Load(); err != nil {
		report(Status{Exit: -1, Error: err.Error()})
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT)
	path := filepath.Join(spec.TaskDir, spec.Bootstrap)
	pid, err := syscall.ForkExec(path, []string{path}, &syscall.ProcAttr{
		Dir:   spec.TaskDir,
		Env:   spec.Env,
		Files: []uintptr{0, 1, 2},
		// Its own session, inside the container's pid namespace: what
		// CRIU needs to checkpoint and restore it on its own.
		Sys: &syscall.SysProcAttr{Setsid: true, Credential: &syscall.Credential{Uid: uint32(spec.UID), Gid: uint32(spec.GID)}},
	})
	if err != nil {
		report(Status{Exit: -1, Error: fmt.Sprintf("exec %s: %v", path, err), Exec: true})
		os.Exit(1)
	}
	go func() {
		for s := range sigs {
			// Everyone in the namespace but this PID 1.
			_ = unix.Kill(-1, s.(syscall.Signal))
		}
	}()
	// SIGUSR1 (from the host agent, which alone can signal this process):
	// the bootstrap is about to be checkpointed and killed, and comes back
	// restored into this pid namespace with the same pid, as a child of the
	// agent's; so its SIGKILL ends nothing, and the shim lives until it is
	// killed (the agent does that when the restored process ends).
	// SIGUSR2: the checkpoint failed; a SIGKILL counts again, and one taken
	// for the checkpoint meanwhile (an out-of-memory kill during the dump)
	// is reported now.
	var checkpointing atomic.Bool
	var swallowed atomic.Pointer[unix.WaitStatus]
	restoring := false
	usr, chld := make(chan os.Signal, 2), make(chan os.Signal, 1)
	signal.Notify(usr, unix.SIGUSR1, unix.SIGUSR2)
	signal.Notify(chld, unix.SIGCHLD)
	go func() {
		for s := range usr {
			checkpointing.Store(s == unix.SIGUSR1)
			if s == unix.SIGUSR1 {
				swallowed.Store(nil) // a new attempt
			}
			if ws := swallowed.Load(); s == unix.SIGUSR2 && ws != nil {
				report(statusOf(*ws))
				os.Exit(0)
			}
		}
	}()
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.ECHILD) && restoring {
			<-chld // an orphan of the restored process, re-parented here
			continue
		}
		if err != nil {
			report(Status{Exit: -1, Error: "wait: " + err.Error()})
			os.Exit(1)
		}
		if wpid != pid {
			continue // an orphan of the function: reaped
		}
		if ws.Signaled() && ws.Signal() == unix.SIGKILL && checkpointing.Swap(false) {
			restoring = true
			swallowed.Store(&ws)
			continue // checkpointed: it is restored with this pid
		}
		report(statusOf(ws))
		os.Exit(0)
	}
}

// statusOf is the report of how the bootstrap ended.
func statusOf(ws unix.WaitStatus) Status {
	st := Status{Exit: ws.ExitStatus()}
	if ws.Signaled() {
		st.Exit, st.Signal = -1, int(ws.Signal())
	}
	return st
}

// mounts builds the container's view of the file system.
func mounts(s Spec) error {
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	if err := maskProc(); err != nil {
		return err
	}
	if err := mountReadOnlyBind(s.CodeSrc, s.TaskDir); err != nil {
		return err
	}
	for _, t := range []struct {
		dir  string
		size int64
	}{{s.TmpDir, s.TmpSize}, {s.ShmDir, s.ShmSize}} {
		if t.dir == "" {
			continue
		}
		if err := unix.Mount("tmpfs", t.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
			"mode=1777,size="+strconv.FormatInt(t.size, 10)); err != nil {
			return fmt.Errorf("mount tmpfs on %s: %w", t.dir, err)
		}
	}
	if err := bindState(s.State); err != nil { // before their sources are hidden
		return err
	}
	for _, d := range s.Hide {
		if _, err := os.Lstat(d); os.IsNotExist(err) {
			continue // nothing there to hide
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
			"mode=755,size=4k"); err != nil {
			return fmt.Errorf("hide %s: %w", d, err)
		}
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("set host name: %w", err)
		}
	}
	return nil
}

// maskProc hides what a fresh /proc shows of the kernel, as container
// runtimes do: files covered with /dev/null, directories made read-only.
func maskProc() error {
	for _, f := range []string{"/proc/kcore", "/proc/keys", "/proc/key-users", "/proc/timer_list",
		"/proc/sched_debug", "/proc/sysrq-trigger", "/proc/latency_stats", "/proc/kallsyms"} {
		if _, err := os.Lstat(f); err != nil {
			continue
		}
		if err := unix.Mount("/dev/null", f, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mask %s: %w", f, err)
		}
	}
	for _, d := range []string{"/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/acpi", "/proc/scsi"} {
		if _, err := os.Lstat(d); err != nil {
			continue
		}
		if err := unix.Mount(d, d, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("mask %s: %w", d, err)
		}
		if err := unix.Mount("", d, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("make %s read-only: %w", d, err)
		}
	}
	return nil
}

// dropPrivileges sets no_new_privs and empties the bounding set, which the
// bootstrap inherits: after its setuid to a non-zero uid it has no
// capabilities and can never regain any.
func dropPrivileges() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	for c := 0; c < 64; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0)
		if err == unix.EINVAL { // past CAP_LAST_CAP
			return nil
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// mountReadOnlyBind binds src onto dst and remounts it read-only, nosuid,
// nodev, keeping whatever flags the kernel locked on the source mount (a
// remount that would clear a locked flag fails with EPERM in a user
// namespace).
func mountReadOnlyBind(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", src, dst, err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dst, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dst, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV)
	for _, m := range []struct{ st, ms uintptr }{
		{unix.ST_NOEXEC, unix.MS_NOEXEC},
		{unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME},
		{unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&m.st != 0 {
			flags |= m.ms
		}
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", dst, err)
	}
	return nil
}

// bindState mounts a small tmpfs on the parent of the state mounts (the
// root file system is read-only), makes a directory for each, binds each
// resource there read-write, and makes the tmpfs read-only again.
func bindState(binds []Bind) error {
	if len(binds) == 0 {
		return nil
	}
	parent := filepath.Dir(binds[0].Dst)
	if err := unix.Mount("tmpfs", parent, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755,size=64k"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", parent, err)
	}
	for _, b := range binds {
		if err := os.Mkdir(b.Dst, 0o755); err != nil {
			return fmt.Errorf("state mount point %s: %w", b.Dst, err)
		}
		if err := unix.Mount(b.Src, b.Dst, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind state %s on %s: %w", b.Src, b.Dst, err)
		}
	}
	if err := unix.Mount("", parent, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", parent, err)
	}
	unix.Umask(0) // inherited by the bootstrap: its files in state are shared
	return nil
}
