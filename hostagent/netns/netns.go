package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// New creates a network namespace owned by the calling process's user
// namespace, with its loopback up, and returns an fd that keeps it alive.
// No goroutine of the caller's runs in it (see onThread).
func New() (int, error) {
	return onThread(func() (int, error) {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return -1, fmt.Errorf("unshare network namespace: %w", err)
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("open network namespace: %w", err)
		}
		if err := loopbackUp(); err != nil {
			_ = unix.Close(fd)
			return -1, err
		}
		return fd, nil
	})
}

// Helper is how a process outside an instance makes a network namespace
// owned by the instance's user namespace: util-linux's nsenter joins that
// user namespace (as its root), unshare makes the network namespace and
// cat, run in it, echoes a byte once it is there and lives until its input
// closes. Its zero value is unusable; LookHelper finds one on PATH (the
// helper then runs by absolute path, with an empty environment).
type Helper struct{ nsenter, unshare, cat string }

// LookHelper finds the helper's programs on PATH.
func LookHelper() (Helper, error) {
	var h Helper
	for _, p := range []struct {
		name string
		to   *string
	}{{"nsenter", &h.nsenter}, {"unshare", &h.unshare}, {"cat", &h.cat}} {
		path, err := exec.LookPath(p.name)
		if err != nil {
			return Helper{}, fmt.Errorf("netns: %s (util-linux, coreutils): %w", p.name, err)
		}
		*p.to = path
	}
	return h, nil
}

// ForUserNamespace creates a network namespace owned by user namespace
// userns (an open /proc/<pid>/ns/user), with its loopback up, and returns
// an fd that keeps it alive (New's, when userns is the caller's own). It
// is an instance's, whose processes must all be trusted while the helper
// runs: it is root in that user namespace until it ends, which is before
// ForUserNamespace returns.
func (h Helper) ForUserNamespace(ctx context.Context, userns *os.File) (int, error) {
	if h.nsenter == "" {
		return -1, errors.New("netns: no helper (LookHelper)")
	}
	same, err := ourUserNamespace(int(userns.Fd()))
	if err != nil {
		return -1, fmt.Errorf("netns: %w", err)
	}
	if same { // no user namespace of its own
		return New()
	}
	// The namespace goes by fd (3 in the helper), not by pid: a pid can
	// be another process's by the time the helper looks it up.
	cmd := exec.CommandContext(ctx, h.nsenter, "--user=/proc/self/fd/3", "--", h.unshare, "--net", "--", h.cat)
	cmd.ExtraFiles = []*os.File{userns}
	cmd.Env = []string{} // nothing of the agent's: the instance's root could read it
	in, err := cmd.StdinPipe()
	if err != nil {
		return -1, fmt.Errorf("netns: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		_ = in.Close()
		return -1, fmt.Errorf("netns: %w", err)
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("netns: start %s: %w", h.nsenter, err)
	}
	fd, err := take(cmd.Process.Pid, in, out)
	_ = in.Close() // cat ends
	werr := cmd.Wait()
	if err != nil {
		return -1, fmt.Errorf("netns: helper: %w (%v: %s)", err, werr, strings.TrimSpace(stderr.String()))
	}
	if err := LoopbackUp(fd); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// take opens the network namespace of helper pid once it made it: nsenter
// and unshare read nothing, so the byte written to in comes back on out
// once cat runs, after unshare (the same process, exec after exec).
func take(pid int, in io.Writer, out io.Reader) (int, error) {
	if _, err := in.Write([]byte{'.'}); err != nil {
		return -1, err
	}
	if _, err := io.ReadFull(out, make([]byte, 1)); err != nil {
		return -1, fmt.Errorf("it ended before it made its namespace: %w", err)
	}
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open its namespace: %w", err)
	}
	return fd, nil
}

// CheckOurs reports why fd is not a network namespace owned by the
// caller's user namespace (one it can move a process into), or nil.
func CheckOurs(fd int) error {
	if t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE); err != nil || t != unix.CLONE_NEWNET {
		return errors.New("not a network namespace")
	}
	owner, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
	if err != nil {
		return fmt.Errorf("its user namespace: %w", err)
	}
	defer unix.Close(owner)
	same, err := ourUserNamespace(owner)
	if err != nil {
		return err
	}
	if !same {
		return errors.New("it belongs to another user namespace")
	}
	return nil
}

// ourUserNamespace reports whether fd refers to the caller's user
// namespace.
func ourUserNamespace(fd int) (bool, error) {
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(fd, &theirs); err != nil {
		return false, fmt.Errorf("its user namespace: %w", err)
	}
	if err := unix.Stat("/proc/self/ns/user", &ours); err != nil {
		return false, fmt.Errorf("our user namespace: %w", err)
	}
	return theirs.Ino == ours.Ino && theirs.Dev == ours.Dev, nil
}

// LoopbackUp sets IFF_UP on lo in the network namespace fd refers to.
func LoopbackUp(fd int) error {
	_, err := onThread(func() (int, error) {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return -1, fmt.Errorf("netns: enter: %w", err)
		}
		return -1, loopbackUp()
	})
	return err
}

// onThread runs f on a goroutine locked to its OS thread, which f may
// move to another network namespace: the thread goes back to the one it
// was in before it serves other goroutines again, and ends with the
// goroutine if it cannot (the process's main thread is parked for good
// instead: Go never ends it).
func onThread(f func() (int, error)) (int, error) {
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread() // f did not run: the thread is as it was
			ch <- res{-1, fmt.Errorf("netns: this thread's namespace: %w", err)}
			return
		}
		fd, err := f()
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		_ = unix.Close(orig)
		ch <- res{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
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

// limitedBuffer keeps the first 4 KiB written to it (a helper's stderr).
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
