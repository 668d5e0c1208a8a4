package initd_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/hostagent/initproto"
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
