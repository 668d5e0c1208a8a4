// Package netnstest makes network namespaces for tests: a namespace held
// by an fd, a function run inside one, and an "outside" host reached over
// a veth pair, with servers the test runs in it. Nothing leaves the
// machine: every address is on links the test creates.
package netnstest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// New returns an fd holding a fresh network namespace with its loopback up,
// closed when t ends.
func New(t testing.TB) int {
	t.Helper()
	fd := -1
	err := In(-1, func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		var err error
		fd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return exec.Command("ip", "link", "set", "lo", "up").Run()
	})
	if err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// Path is a path naming the namespace of fd, for tools and CNI plugins.
func Path(fd int) string { return fmt.Sprintf("/proc/%d/fd/%d", unix.Getpid(), fd) }

// In runs fn on a dedicated OS thread inside the namespace of fd (-1: the
// thread's own, for fn to change); the thread is discarded afterwards.
// Sockets fn creates belong to that namespace.
func In(fd int, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if fd >= 0 {
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				ch <- fmt.Errorf("setns: %w", err)
				return
			}
		}
		ch <- fn()
	}()
	return <-ch
}

// Dial connects to addr from inside the namespace of fd within timeout and
// returns the first line addr answers to an HTTP GET, or an error.
func Get(fd int, url string, timeout time.Duration) (string, error) {
	var conn net.Conn
	err := In(fd, func() error {
		var err error
		host := strings.TrimPrefix(url, "http://")
		host, _, _ = strings.Cut(host, "/")
		conn, err = (&net.Dialer{Timeout: timeout}).Dial("tcp", host)
		return err
	})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	c := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf)
	return strings.TrimSpace(string(buf[:n])), nil
}

// Outside is a namespace standing for the world beyond the host: a veth
// pair links it to the host, and the host routes Prefixes to it.
type Outside struct {
	Fd int
}

// NewOutside creates the outside namespace with addresses addrs (CIDRs such
// as "198.51.100.1/24"), the host side of the veth named hostIf, and host
// routes to each address's prefix. All is removed when t ends.
func NewOutside(t testing.TB, hostIf string, addrs ...string) *Outside {
	t.Helper()
	fd := New(t)
	peer := hostIf + "p"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	_ = exec.Command("ip", "link", "del", hostIf).Run() // a leftover of a killed run
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	run("ip", "link", "set", peer, "netns", Path(fd))
	run("ip", "link", "set", hostIf, "up")
	for _, a := range addrs {
		ip, _, _ := strings.Cut(a, "/")
		if err := In(fd, func() error {
			for _, args := range [][]string{{"addr", "add", a, "dev", peer}, {"link", "set", peer, "up"}, {"route", "replace", "default", "dev", peer}} {
				if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
					return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		run("ip", "route", "replace", ip+"/32", "dev", hostIf)
	}
	return &Outside{Fd: fd}
}

// Serve answers every HTTP request on addr (an address of the namespace,
// host:port) with body, until t ends.
func (o *Outside) Serve(t testing.TB, addr, body string) {
	t.Helper()
	var ln net.Listener
	if err := In(o.Fd, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in the outside namespace: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(body + "\n"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends when Close below closes the listener
	t.Cleanup(func() { _ = srv.Close() })
}

// InUserNamespace returns cat, to be started in a user namespace of its
// own (its root is uid and gid 100000 outside): a process whose namespaces
// are not the test's, as an instance's are not the agent's.
func InUserNamespace() *exec.Cmd {
	cmd := exec.Command("cat")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	return cmd
}
