package initd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

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
