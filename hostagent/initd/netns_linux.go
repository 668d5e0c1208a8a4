package initd

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// newNetns creates a network namespace, owned by ember-init's user
// namespace (the instance's), with its loopback up, and returns an fd that
// keeps it alive. Each container gets one: its Runtime API listens on its
// own loopback, out of every other container's reach, and the host agent
// may connect it to a network (it receives the fd with Started). The work
// runs on a dedicated OS thread that is never unlocked, so the thread is
// discarded and no other goroutine runs in the new namespace.
func newNetns() (int, error) {
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread dies with the goroutine
		fd, err := netnsOnThread()
		ch <- res{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

func netnsOnThread() (int, error) {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("unshare network namespace: %w", err)
	}
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open network namespace: %w", err)
	}
	if err := loopbackUp(); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// loopbackUp sets IFF_UP on lo in the calling thread's network namespace.
func loopbackUp() error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: socket: %w", err)
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback: set up: %w", err)
	}
	return nil
}
