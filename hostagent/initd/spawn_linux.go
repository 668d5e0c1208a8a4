package initd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// spawnSpec is everything needed to start one container process.
type spawnSpec struct {
	codeSrc   string // host-side (instance-side) code directory
	taskDir   string // where the code appears, read-only
	bootstrap string // file name in taskDir
	tmpDir    string
	tmpSize   int64
	uid, gid  int
	env       []string
	// tasksFDs are v1 "tasks" files the spawning thread joins by writing "0".
	tasksFDs []int
	// cgroup2FD is the cgroup2 directory for CLONE_INTO_CGROUP, or -1.
	cgroup2FD int
	// out receives the child's stdout and stderr.
	out *os.File
}

// spawn starts the container process as PLATFORM.md describes. All
// namespace, cgroup and privilege changes are made to a dedicated OS thread
// that is never unlocked, so Go discards it when the goroutine ends and no
// other goroutine ever runs inside the container's mount namespace or with
// its reduced privileges. track runs the fork so that a reaper can register
// the pid before it could be reaped.
func spawn(s spawnSpec, track func(start func() (int, error)) (int, error)) (int, error) {
	type res struct {
		pid int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread dies with the goroutine
		pid, err := spawnOnThread(s, track)
		ch <- res{pid, err}
	}()
	r := <-ch
	return r.pid, r.err
}

func spawnOnThread(s spawnSpec, track func(start func() (int, error)) (int, error)) (int, error) {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return 0, fmt.Errorf("unshare mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return 0, fmt.Errorf("make / a slave mount: %w", err)
	}
	if err := mountReadOnlyBind(s.codeSrc, s.taskDir); err != nil {
		return 0, err
	}
	tmpOpts := "mode=1777,size=" + strconv.FormatInt(s.tmpSize, 10)
	if err := unix.Mount("tmpfs", s.tmpDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpOpts); err != nil {
		return 0, fmt.Errorf("mount tmpfs on %s: %w", s.tmpDir, err)
	}
	for _, fd := range s.tasksFDs {
		if _, err := unix.Write(fd, []byte("0")); err != nil {
			return 0, fmt.Errorf("join v1 cgroup (tasks fd %d): %w", fd, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return 0, fmt.Errorf("set no_new_privs: %w", err)
	}
	if err := dropBoundingSet(); err != nil {
		return 0, err
	}

	devNull, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open /dev/null: %w", err)
	}
	defer unix.Close(devNull)
	out := s.out.Fd()
	attr := &syscall.ProcAttr{
		Dir:   s.taskDir,
		Env:   s.env,
		Files: []uintptr{uintptr(devNull), out, out},
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)},
			Setpgid:    true,
		},
	}
	if s.cgroup2FD >= 0 {
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = s.cgroup2FD
	}
	path := filepath.Join(s.taskDir, s.bootstrap)
	pid, err := track(func() (int, error) {
		return syscall.ForkExec(path, []string{path}, attr)
	})
	runtime.KeepAlive(s.out)
	if err != nil {
		return 0, fmt.Errorf("exec %s: %w", path, err)
	}
	return pid, nil
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

// dropBoundingSet removes every capability from the thread's bounding set,
// which the child inherits; after the setuid to a non-zero uid the child has
// no effective or permitted capabilities and can never regain any.
func dropBoundingSet() error {
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

// cgroupMembers lists the processes in the cgroup2 directory dirFD, leaving
// out the caller itself (ember-init is never a leftover to kill or wait
// for) and reporting separately whether it was there. Pids are as seen from
// the caller's pid namespace; a process outside it is listed as 0.
func cgroupMembers(dirFD int) (pids []int, self bool, err error) {
	fd, err := unix.Openat(dirFD, "cgroup.procs", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("open cgroup.procs: %w", err)
	}
	f := os.NewFile(uintptr(fd), "cgroup.procs")
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, false, fmt.Errorf("read cgroup.procs: %w", err)
	}
	me := os.Getpid()
	for _, field := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(field)
		if err != nil {
			return nil, false, fmt.Errorf("parse cgroup.procs entry %q: %w", field, err)
		}
		if pid == me {
			self = true
			continue
		}
		pids = append(pids, pid)
	}
	return pids, self, nil
}

// killCgroup SIGKILLs the members of a container's cgroup2 directory, as
// cgroupMembers returned them (pids, and self if the caller is one of them,
// which is reported as an error and never killed).
//
// It does not write cgroup.kill, though that would kill the subtree at once
// and race no fork: on Linux 6.18 (measured here), once cgroup.kill has been
// written in a cgroup, every later clone3 CLONE_INTO_CGROUP child into it is
// SIGKILLed at birth (the fork records the spawner's cgroup kill count, not
// the target's, and post-fork sees them differ), so no process could ever be
// respawned into the container again. Forks racing this kill are caught by
// drainCgroup's next round. cgroup.kill is also not delegated to the
// instance's user namespace by the host agent.
func killCgroup(pids []int, self bool) error {
	var errs []error
	for _, pid := range pids {
		if pid <= 0 {
			continue // outside our pid namespace: not ours to kill
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
		}
	}
	if self {
		errs = append(errs, errors.New("ember-init itself is in the container's cgroup"))
	}
	return errors.Join(errs...)
}

// drainCgroup kills every process in the cgroup2 directory dirFD but the
// caller and waits until none is left, for at most bound. The kill is
// repeated on every round, so that processes forked since the last read of
// cgroup.procs are caught too. Between rounds it sleeps in poll(2) on
// cgroup.events, which the kernel flags when the cgroup's population
// changes, at most pollStep at a time.
func drainCgroup(dirFD int, bound time.Duration) error {
	const pollStep = 5 * time.Millisecond
	deadline := time.Now().Add(bound)
	evFD, err := unix.Openat(dirFD, "cgroup.events", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		evFD = -1 // no notification: plain timed rounds
	} else {
		defer unix.Close(evFD)
	}
	var buf [128]byte
	var killErr error
	for {
		if evFD >= 0 {
			// Reading acknowledges the pending notification, so a change
			// after this read wakes the poll below.
			_, _ = unix.Pread(evFD, buf[:], 0)
		}
		pids, self, err := cgroupMembers(dirFD)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if err := killCgroup(pids, self); err != nil {
			killErr = err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return errors.Join(fmt.Errorf("%d processes still in the cgroup after %v: %v", len(pids), bound, pids), killErr)
		}
		step := min(left, pollStep)
		if evFD < 0 {
			time.Sleep(step)
			continue
		}
		fds := []unix.PollFd{{Fd: int32(evFD), Events: unix.POLLPRI}}
		if _, err := unix.Poll(fds, int(step.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll cgroup.events: %w", err)
		}
	}
}
