package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/sysmon"
	"github.com/ember-run/ember/internal/testenv"
)

// relayRoleEnv makes the test binary a relay or an echo process of
// relayFloor instead of running tests (TestMain).
const relayRoleEnv = "EMBER_E2E_RELAY_ROLE"

// The relay's messages besides the invocation's frame: the answer to the
// response (the Runtime API's 202) and the runtime's next request.
const (
	relayAck  = "ack"
	relayNext = "next"
)

// relayFloor measures, in the same run, the floor of ember-init's share of
// a warm invocation on this machine: what a Go process with one P (as
// ember-init runs, with the sysmon slack the agent gives ember-init) pays
// to pass the invocation's messages as ember-init does and nothing else.
// From the agent's side (a Unix socket from this process) it reads the
// invocation and hands it to the function's side (a TCP loopback
// connection to an echo process, standing for the runtime's waiting
// GET /next); it reads the response, answers it (the 202), passes it back
// to the agent and reads the runtime's next request: three reads and three
// writes per invocation. procs such relays get rate invocations of size
// bytes a second in all, in turn, n after a warm-up; it returns their CPU
// ms and task switches per invocation. Unlike ember-init, the relays run
// without a seccomp filter, namespaces or a CPU quota, and parse nothing.
func relayFloor(b *testing.B, procs, rate, n, size int) (cpuMs, switches float64) {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	conns := make([]net.Conn, procs)
	pids := make([]int, procs)
	for i := range procs {
		conns[i], pids[i] = startRelay(b, self, size)
	}
	buf := make([]byte, size)
	invocations := func(count int) {
		slice := time.Second / time.Duration(rate)
		start := time.Now()
		for i := range count {
			c := conns[i%procs]
			if _, err := c.Write(buf); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
			if next := start.Add(time.Duration(i+1) * slice); time.Until(next) > 0 {
				time.Sleep(time.Until(next)) // pacing, not synchronising
			}
		}
	}
	invocations(rate) // a second's warm-up
	before := testenv.ProcThreads(pids...)
	invocations(n)
	after := testenv.ProcThreads(pids...)
	return float64(after.CPUNs-before.CPUNs) / 1e6 / float64(n), float64(after.Switches-before.Switches) / float64(n)
}

// startRelay starts a relay process and its echo process; it returns the
// agent's side of the relay, ready, and the relay's pid. Both end when
// the benchmark does: closing the agent's side ends the relay, whose end
// ends the echo (and both die with this process).
func startRelay(b *testing.B, self string, size int) (net.Conn, int) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "agent-side"), os.NewFile(uintptr(fds[1]), "relay-side")
	defer ours.Close()
	defer theirs.Close()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	lf, err := ln.File()
	if err != nil {
		b.Fatal(err)
	}
	defer lf.Close()
	conn, err := net.FileConn(ours)
	if err != nil {
		b.Fatal(err)
	}
	var cmds []*exec.Cmd
	b.Cleanup(func() {
		conn.Close()
		for _, cmd := range cmds {
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
	})
	start := func(role string, env []string, files ...*os.File) {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), append(env, relayRoleEnv+"="+role, "EMBER_E2E_RELAY_SIZE="+strconv.Itoa(size))...)
		cmd.ExtraFiles, cmd.Stderr = files, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	start("relay", []string{"GOMAXPROCS=1"}, theirs, lf)
	start("echo", []string{"EMBER_E2E_RELAY_ADDR=" + ln.Addr().String()})
	var pid [4]byte // the relay says its pid once the echo process connected
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(conn, pid[:]); err != nil {
		b.Fatalf("relay: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	p := int(pid[0]) | int(pid[1])<<8 | int(pid[2])<<16 | int(pid[3])<<24
	if err := sysmon.SetSlack(p, sysmon.Slack); err != nil {
		b.Fatal(err)
	}
	return conn, p
}

// runRelayRole runs this process as relayFloor's relay or echo process.
func runRelayRole(role string) error {
	size, err := strconv.Atoi(os.Getenv("EMBER_E2E_RELAY_SIZE"))
	if err != nil {
		return err
	}
	buf, small := make([]byte, size), make([]byte, len(relayNext))
	read := func(from io.Reader, b []byte) error { _, err := io.ReadFull(from, b); return err }
	write := func(to io.Writer, b []byte) error { _, err := to.Write(b); return err }
	switch role {
	case "echo": // the runtime: the invocation in, its response out, the 202 in, the next request out
		c, err := net.Dial("tcp", os.Getenv("EMBER_E2E_RELAY_ADDR"))
		if err != nil {
			return err
		}
		for read(c, buf) == nil && write(c, buf) == nil && read(c, small[:len(relayAck)]) == nil && write(c, []byte(relayNext)) == nil {
		}
		return nil
	case "relay":
		f, l := os.NewFile(3, "agent"), os.NewFile(4, "listener")
		agent, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return err
		}
		ln, err := net.FileListener(l)
		l.Close()
		if err != nil {
			return err
		}
		fn, err := ln.Accept()
		ln.Close()
		if err != nil {
			return err
		}
		p := os.Getpid()
		if err := write(agent, []byte{byte(p), byte(p >> 8), byte(p >> 16), byte(p >> 24)}); err != nil {
			return err
		}
		for read(agent, buf) == nil && write(fn, buf) == nil && read(fn, buf) == nil &&
			write(fn, []byte(relayAck)) == nil && write(agent, buf) == nil && read(fn, small) == nil {
		}
		return nil
	}
	return fmt.Errorf("%s=%q: want relay or echo", relayRoleEnv, role)
}
