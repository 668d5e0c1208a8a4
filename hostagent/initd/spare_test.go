package initd_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/netns"
	"github.com/ember-run/ember/internal/netnstest"
	"github.com/ember-run/ember/internal/testenv"
)

// netnsOf names the network namespace an fd of this process holds.
func netnsOf(t *testing.T, fd int) string {
	t.Helper()
	s, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil || !strings.HasPrefix(s, "net:[") {
		t.Fatalf("fd %d: %q %v, want a network namespace", fd, s, err)
	}
	return s
}

// setAside asks for a network namespace set aside as id and returns it.
func setAside(t *testing.T, c *client, id string) string {
	t.Helper()
	f, err := c.call(initproto.TypeNetns, initproto.Netns{ID: id}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var r initproto.Netns
	if err := f.Decode(&r); err != nil || f.Type != initproto.TypeNetnsReady || r.Error != "" || len(f.FDs) != 1 {
		t.Fatalf("set aside %s: type %d %+v %v, %d fds", id, f.Type, r, err, len(f.FDs))
	}
	defer unix.Close(f.FDs[0])
	return netnsOf(t, f.FDs[0])
}

// A container started with Netns takes the namespace set aside (once), and
// runs in it; what a connection set aside goes with it.
func TestNetnsSetAside(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	ns := setAside(t, c, "n1")
	if other := setAside(t, c, "n2"); other == ns {
		t.Fatalf("two namespaces set aside are one: %s", ns)
	}
	sc := spec("k", "exit")
	sc.Netns = "n1"
	f, err := c.call(initproto.TypeStart, sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st initproto.Started
	if err := f.Decode(&st); err != nil || st.Error != "" || st.Pid <= 0 || len(f.FDs) != 1 {
		t.Fatalf("start in n1: %+v %v, %d fds", st, err, len(f.FDs))
	}
	got := netnsOf(t, f.FDs[0])
	unix.Close(f.FDs[0])
	if got != ns {
		t.Fatalf("the container's namespace is %s, want the one set aside %s", got, ns)
	}
	if res, body := c.invoke("k", "k-1", 10*time.Second, `{"v":1}`); res.Status != initproto.StatusOK || body != `{"v":1}` {
		t.Fatalf("invoke in n1: %+v %s", res, body)
	}
	again := spec("k2", "exit")
	again.Netns = "n1"
	if st := c.start(again); !strings.Contains(st.Error, "no network namespace set aside") {
		t.Fatalf("a second container took n1: %+v", st)
	}
	// Given back, n3 is closed; n2 goes with the connection when a new
	// one replaces it. (ember-init runs in this process: its fds are ours.)
	n3 := setAside(t, c, "n3")
	// ember-init closes the copy it sent just after sending it.
	testenv.Eventually(t, 5*time.Second, "only ember-init's fd holds n3", func() bool { return testenv.OpenFDs(t, n3) == 1 })
	if f, err := c.call(initproto.TypeNetns, initproto.Netns{ID: "n3", Release: true}, nil); err != nil || len(f.FDs) != 0 {
		t.Fatalf("give n3 back: %v", err)
	}
	if n := testenv.OpenFDs(t, n3); n != 0 {
		t.Fatalf("%d fds hold n3 after it was given back", n)
	}
	n2 := setAside(t, c, "n2b")
	c2 := e.dial(t)
	select {
	case <-c.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("old connection not closed")
	}
	testenv.Eventually(t, 5*time.Second, "the ended connection's namespace closed", func() bool { return testenv.OpenFDs(t, n2) == 0 })
	late := spec("k3", "exit")
	late.Netns = "n2b"
	if st := c2.start(late); !strings.Contains(st.Error, "no network namespace set aside") {
		t.Fatalf("a container took n2b after its connection ended: %+v", st)
	}
}

// A namespace the agent made (Adopt) is set aside like one ember-init made:
// the container started with it runs in it. What is not one namespace is
// refused, and ember-init keeps none of the fds.
func TestNetnsAdopted(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	made, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	ns := netnsOf(t, made)
	adopt := func(id string, fds ...int) initproto.Netns {
		t.Helper()
		f, err := c.call(initproto.TypeNetns, initproto.Netns{ID: id, Adopt: true}, nil, fds...)
		if err != nil {
			t.Fatal(err)
		}
		var r initproto.Netns
		if err := f.Decode(&r); err != nil || f.Type != initproto.TypeNetnsReady || len(f.FDs) != 0 {
			t.Fatalf("adopt %s: type %d %+v %v, %d fds", id, f.Type, r, err, len(f.FDs))
		}
		return r
	}
	if r := adopt("a1", made); r.Error != "" {
		t.Fatalf("adopt: %s", r.Error)
	}
	unix.Close(made) // ember-init holds its own copy
	if n := testenv.OpenFDs(t, ns); n != 1 {
		t.Fatalf("%d fds hold the adopted namespace, want ember-init's one", n)
	}
	sc := spec("k", "exit")
	sc.Netns = "a1"
	f, err := c.call(initproto.TypeStart, sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st initproto.Started
	if err := f.Decode(&st); err != nil || st.Error != "" || len(f.FDs) != 1 {
		t.Fatalf("start in a1: %+v %v, %d fds", st, err, len(f.FDs))
	}
	got := netnsOf(t, f.FDs[0])
	unix.Close(f.FDs[0])
	if got != ns {
		t.Fatalf("the container's namespace is %s, want the adopted %s", got, ns)
	}
	if res, body := c.invoke("k", "k-1", 10*time.Second, `{"v":1}`); res.Status != initproto.StatusOK || body != `{"v":1}` {
		t.Fatalf("invoke in a1: %+v %s", res, body)
	}

	if r := adopt("none"); !strings.Contains(r.Error, "got 0 fds") {
		t.Fatalf("adopt without a namespace: %+v", r)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if r := adopt("file", int(devnull.Fd())); !strings.Contains(r.Error, "not a network namespace") {
		t.Fatalf("adopt /dev/null: %+v", r)
	}
	two, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	twoNs := netnsOf(t, two)
	if r := adopt("two", two, two); !strings.Contains(r.Error, "got 2 fds") {
		t.Fatalf("adopt two fds: %+v", r)
	}
	unix.Close(two)
	testenv.Eventually(t, 5*time.Second, "ember-init closed the refused fds", func() bool { return testenv.OpenFDs(t, twoNs) == 0 })
	// One of another user namespace: ember-init could not move a process
	// into it.
	helper, err := netns.LookHelper()
	if err != nil {
		t.Fatal(err)
	}
	other := netnstest.InUserNamespace()
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	userns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", other.Process.Pid))
	_ = other.Wait()
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := helper.ForUserNamespace(context.Background(), userns)
	userns.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(foreign)
	if r := adopt("foreign", foreign); !strings.Contains(r.Error, "another user namespace") {
		t.Fatalf("adopt another user namespace's: %+v", r)
	}
	late := spec("k2", "exit")
	late.Netns = "file"
	if st := c.start(late); !strings.Contains(st.Error, "no network namespace set aside") {
		t.Fatalf("a refused namespace was set aside: %+v", st)
	}
}
