package netns

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/internal/netnstest"
)

// inUserNamespace starts a process in a user namespace of its own (root
// there is uid 100000 outside), held until the test ends.
func inUserNamespace(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the tests need root (make test runs them as root)")
	}
	cmd := netnstest.InUserNamespace()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close(); _ = cmd.Wait() })
	return cmd.Process.Pid
}

// ownerIno is the inode of the user namespace owning network namespace fd.
func ownerIno(t *testing.T, fd int) uint64 {
	t.Helper()
	u, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(u)
	var st unix.Stat_t
	if err := unix.Fstat(u, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func nsIno(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// loopbackIsUp reads lo's flags in network namespace fd.
func loopbackIsUp(t *testing.T, fd int) bool {
	t.Helper()
	up, err := onThread(func() (int, error) {
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return 0, err
		}
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		defer unix.Close(s)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			return 0, err
		}
		if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
			return 0, err
		}
		return int(ifr.Uint16() & unix.IFF_UP), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return up != 0
}

func openUserNS(t testing.TB, pid int) *os.File {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestForUserNamespaceOwnedByIt(t *testing.T) {
	h, err := LookHelper()
	if err != nil {
		t.Fatal(err)
	}
	pid := inUserNamespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fd, err := h.ForUserNamespace(ctx, openUserNS(t, pid))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if got, want := ownerIno(t, fd), nsIno(t, "/proc/"+strconv.Itoa(pid)+"/ns/user"); got != want {
		t.Fatalf("the namespace's owner is user namespace %d, want the process's %d", got, want)
	}
	if ownerIno(t, fd) == nsIno(t, "/proc/self/ns/user") {
		t.Fatal("the namespace is owned by the host's user namespace")
	}
	if nsIno(t, "/proc/self/fd/"+strconv.Itoa(fd)) == nsIno(t, "/proc/"+strconv.Itoa(pid)+"/ns/net") {
		t.Fatal("got the process's own network namespace, not a new one")
	}
	if !loopbackIsUp(t, fd) {
		t.Fatal("loopback is down")
	}
}

// The helper goes by the user namespace held open, not by a pid: after
// the process that had it ended, the namespace is made in it all the same.
func TestForUserNamespaceHeldOpen(t *testing.T) {
	h, err := LookHelper()
	if err != nil {
		t.Fatal(err)
	}
	cmd := netnstest.InUserNamespace()
	if err := cmd.Start(); err != nil { // stdin is /dev/null: it ends at once
		t.Fatal(err)
	}
	userns := openUserNS(t, cmd.Process.Pid)
	_ = cmd.Wait()
	fd, err := h.ForUserNamespace(context.Background(), userns)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(int(userns.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if ownerIno(t, fd) != st.Ino {
		t.Fatal("not owned by the user namespace held open")
	}
}

// What the helper cannot join (a network namespace given as a user
// namespace) fails with the helper's words and leaves no fd open.
func TestForUserNamespaceErrors(t *testing.T) {
	h, err := LookHelper()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	netFile, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer netFile.Close()
	before := openFDs(t)
	if fd, err := h.ForUserNamespace(ctx, netFile); err == nil {
		unix.Close(fd)
		t.Fatal("a namespace from a network namespace taken for a user namespace")
	} else {
		t.Log(err)
	}
	if after := openFDs(t); after != before {
		t.Fatalf("%d fds open after a failure, %d before", after, before)
	}
}

func TestNewOwnedByOurs(t *testing.T) {
	runtime.LockOSThread() // this thread's namespace is the one goroutines run in
	defer runtime.UnlockOSThread()
	ours := nsIno(t, "/proc/thread-self/ns/net")
	fd, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if ownerIno(t, fd) != nsIno(t, "/proc/self/ns/user") {
		t.Fatal("not owned by the caller's user namespace")
	}
	if nsIno(t, "/proc/self/fd/"+strconv.Itoa(fd)) == ours {
		t.Fatal("the caller's own network namespace")
	}
	if !loopbackIsUp(t, fd) {
		t.Fatal("loopback is down")
	}
	if err := CheckOurs(fd); err != nil {
		t.Fatal(err)
	}
}

// The threads New and LoopbackUp ran on go back to the namespace they
// were in: after many, every thread of the process is in ours (none was
// left behind in a container's namespace, the main thread included).
func TestThreadsGoBack(t *testing.T) {
	runtime.LockOSThread()
	ours := nsIno(t, "/proc/thread-self/ns/net")
	runtime.UnlockOSThread()
	for range 50 {
		fd, err := New()
		if err != nil {
			t.Fatal(err)
		}
		if err := LoopbackUp(fd); err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if got := nsIno(t, "/proc/self/task/"+task.Name()+"/ns/net"); got != ours {
			t.Errorf("thread %s is in network namespace %d, not ours %d", task.Name(), got, ours)
		}
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func BenchmarkForUserNamespace(b *testing.B) {
	h, err := LookHelper()
	if err != nil {
		b.Fatal(err)
	}
	cmd := netnstest.InUserNamespace()
	in, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = in.Close(); _ = cmd.Wait() }()
	userns := openUserNS(b, cmd.Process.Pid)
	for b.Loop() {
		fd, err := h.ForUserNamespace(context.Background(), userns)
		if err != nil {
			b.Fatal(err)
		}
		unix.Close(fd)
	}
}

func TestForUserNamespaceOurs(t *testing.T) {
	h, err := LookHelper()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := h.ForUserNamespace(context.Background(), openUserNS(t, os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if ownerIno(t, fd) != nsIno(t, "/proc/self/ns/user") || !loopbackIsUp(t, fd) {
		t.Fatal("not a namespace of ours with its loopback up")
	}
}
