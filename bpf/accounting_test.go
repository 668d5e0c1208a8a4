package bpf_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/bpf"
	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/internal/testenv"
)

// helperEnv makes the test binary a workload: it reads one line from stdin
// (so the test can move it into a cgroup first), does the work named by the
// variable's value, and exits.
const helperEnv = "EMBER_BPF_HELPER"

func TestMain(m *testing.M) {
	if job := os.Getenv(helperEnv); job != "" {
		os.Exit(runHelper(job))
	}
	os.Exit(m.Run())
}

func runHelper(job string) int {
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		fmt.Fprintln(os.Stderr, "helper: read go:", err)
		return 2
	}
	kind, arg, _ := strings.Cut(job, ":")
	switch kind {
	case "burn": // burn:<duration> of process CPU time
		d, err := time.ParseDuration(arg)
		if err != nil {
			return 2
		}
		start := processCPU()
		for processCPU()-start < d {
		}
	case "send": // send:<addr>:<bytes>
		addr, n, _ := strings.Cut(arg, ",")
		size, _ := strconv.Atoi(n)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		if _, err := c.Write(make([]byte, size)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		// Half-close and wait for the listener's close, so that every byte
		// is delivered before the helper exits.
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return 2
		}
		if _, err := io.Copy(io.Discard, c); err != nil {
			return 2
		}
		c.Close()
	case "echo": // echo:<addr>: send back what arrives until EOF
		c, err := net.Dial("tcp", arg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 2
		}
		if _, err := io.Copy(c, c); err != nil {
			return 2
		}
		c.Close()
	case "idle":
	default:
		return 2
	}
	return 0
}

func processCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root: loads eBPF programs and creates cgroups")
	}
}

// parentCgroup creates a stand-in instance cgroup in every hierarchy
// hostagent/cgroup uses and removes it when t ends.
func parentCgroup(t testing.TB) string {
	t.Helper()
	p := fmt.Sprintf("/ember-bpftest-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	for _, ctrl := range append([]string{cgroup.Unified}, cgroup.Controllers...) {
		if err := os.Mkdir(filepath.Join(cgroup.Root, ctrl, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := cgroup.RemoveTree(p); err != nil {
			t.Errorf("remove test parent cgroup: %v", err)
		}
	})
	return p
}

func load(t testing.TB) *bpf.Accounting {
	t.Helper()
	needRoot(t)
	a, err := bpf.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Close(); err != nil {
			t.Errorf("Accounting.Close: %v", err)
		}
	})
	return a
}

// box is one container cgroup with accounting attached.
type box struct {
	cg *cgroup.Child
	h  *bpf.Handle
}

func newBox(t testing.TB, a *bpf.Accounting, parent, name string) *box {
	t.Helper()
	cg, err := cgroup.Create(parent, name, 0, cgroup.Limits{MemoryBytes: 256 << 20})
	if err != nil {
		t.Fatal(err)
	}
	cg.CloseFDs()
	h, err := a.Attach(cg.Path(cgroup.Unified), cg.ID())
	if err != nil {
		_ = cg.Remove()
		t.Fatal(err)
	}
	b := &box{cg: cg, h: h}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("Handle.Close: %v", err)
		}
		if err := cg.Remove(); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	return b
}

// proc is a helper process parked before its work.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// start starts a helper doing job and moves it into b's cgroups (cgroup2
// and every v1 controller) before releasing it.
func (b *box) start(t testing.TB, job string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+job, "GOMAXPROCS=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, ctrl := range append([]string{cgroup.Unified}, cgroup.Controllers...) {
		if err := os.WriteFile(filepath.Join(b.cg.Path(ctrl), "cgroup.procs"), []byte(pid), 0); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatalf("move helper into %s: %v", ctrl, err)
		}
	}
	return &proc{cmd: cmd, stdin: stdin}
}

func (p *proc) release(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
}

func (p *proc) wait(t testing.TB) {
	t.Helper()
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

func (b *box) read(t testing.TB) bpf.Counters {
	t.Helper()
	c, err := b.h.Read()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestNoSocketsNoTraffic: a process that only burns CPU counts no traffic.
func TestNoSocketsNoTraffic(t *testing.T) {
	a := load(t)
	b := newBox(t, a, parentCgroup(t), "burn")
	p := b.start(t, "burn:50ms")
	p.release(t)
	p.wait(t)
	if c := b.read(t); c != (bpf.Counters{}) {
		t.Errorf("a process without sockets counted network traffic: %+v", c)
	}
}

// listen accepts connections and counts what they send until t ends.
func listen(t *testing.T) (addr string, received func() int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var total int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, _ := io.Copy(io.Discard, c)
				c.Close()
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String(), func() int64 { mu.Lock(); defer mu.Unlock(); return total }
}

func TestNetworkEgress(t *testing.T) {
	a := load(t)
	parent := parentCgroup(t)
	addr, received := listen(t)
	sender := newBox(t, a, parent, "sender")
	quiet := newBox(t, a, parent, "quiet")

	p := sender.start(t, "send:"+addr+",1048576")
	q := quiet.start(t, "idle")
	p.release(t)
	q.release(t)
	p.wait(t)
	q.wait(t)
	s := sender.read(t)
	t.Logf("sender: %+v (listener got %d bytes)", s, received())
	if s.TxBytes < 1<<20 {
		t.Errorf("egress %d bytes, want >= 1 MiB", s.TxBytes)
	}
	if s.TxBytes > 1<<20+1<<16 {
		t.Errorf("egress %d bytes: far more than the 1 MiB sent", s.TxBytes)
	}
	if s.TxPackets == 0 || s.RxPackets == 0 || s.RxBytes == 0 {
		t.Errorf("want packets both ways and ACK bytes in: %+v", s)
	}
	if got := quiet.read(t); got.TxBytes != 0 || got.RxBytes != 0 || got.TxPackets != 0 || got.RxPackets != 0 {
		t.Errorf("idle process counted traffic: %+v", got)
	}
}

func TestConcurrentCgroupsNotMixed(t *testing.T) {
	a := load(t)
	parent := parentCgroup(t)
	addr, _ := listen(t)
	burner := newBox(t, a, parent, "burner")
	sender := newBox(t, a, parent, "sender")
	pb := burner.start(t, "burn:200ms")
	ps := sender.start(t, "send:"+addr+",4194304")
	pb.release(t)
	ps.release(t)
	pb.wait(t)
	ps.wait(t)
	bc, sc := burner.read(t), sender.read(t)
	t.Logf("burner %+v; sender %+v", bc, sc)
	if bc.TxBytes != 0 || bc.RxBytes != 0 {
		t.Errorf("burner has the sender's traffic: %+v", bc)
	}
	if sc.TxBytes < 4<<20 {
		t.Errorf("sender egress %d, want >= 4 MiB", sc.TxBytes)
	}
}

func TestNoLeakAfter1000Cycles(t *testing.T) {
	a := load(t)
	parent := parentCgroup(t)
	entries0, err := a.Entries()
	if err != nil {
		t.Fatal(err)
	}
	links0 := testenv.OpenFDs(t, "anon_inode:bpf_link")
	start := time.Now()
	for i := range 1000 {
		cg, err := cgroup.Create(parent, "c"+strconv.Itoa(i), 0, cgroup.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		h, err := a.Attach(cg.Path(cgroup.Unified), cg.ID())
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if n, _ := a.Entries(); n != entries0+1 {
				t.Fatalf("entries %d after one attach, want %d", n, entries0+1)
			}
			if n := testenv.OpenFDs(t, "anon_inode:bpf_link"); n != links0+2 {
				t.Fatalf("bpf links %d after one attach, want %d", n, links0+2)
			}
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		if err := cg.Remove(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("1000 create/attach/detach/remove cycles in %v", time.Since(start))
	if n, err := a.Entries(); err != nil || n != entries0 {
		t.Errorf("usage map entries %d (err %v), want baseline %d", n, err, entries0)
	}
	if n := testenv.OpenFDs(t, "anon_inode:bpf_link"); n != links0 {
		t.Errorf("open bpf links %d, want baseline %d", n, links0)
	}
}

func TestAttachTwiceAndCloseIdempotent(t *testing.T) {
	a := load(t)
	b := newBox(t, a, parentCgroup(t), "twice")
	if _, err := a.Attach(b.cg.Path(cgroup.Unified), b.cg.ID()); !errors.Is(err, bpf.ErrAttached) {
		t.Fatalf("second Attach: %v, want ErrAttached", err)
	}
	if err := b.h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.h.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := b.h.Read(); err == nil {
		t.Fatal("Read after Close succeeded")
	}
	if _, err := os.Stat(b.cg.Path(cgroup.Unified)); errors.Is(err, fs.ErrNotExist) {
		t.Fatal("cgroup vanished")
	}
}
