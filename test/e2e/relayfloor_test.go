package e2e

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

// relayRoleEnv makes the test binary a relay or an echo process of
// relayFloor instead of running tests (TestMain).
const relayRoleEnv = "EMBER_E2E_RELAY_ROLE"

// relayFloor measures, in the same run, the floor of ember-init's share of
// a warm invocation on this machine: what a Go process with one P (as
// ember-init runs) pays to pass a frame from one socket to another and the
// answer back, two wake-ups, whatever it does in between. procs relay
// processes (this binary again, GOMAXPROCS=1, sysmon's timer slack as the
// agent gives ember-init's), each between a Unix socket from this process
// (the agent's side) and a TCP loopback connection to an echo process (the
// function's side), get rate round trips of size bytes a second in all,
// spread over them in turn, n round trips after a warm-up. It returns the
// relays' CPU ms and task switches per round trip.
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
	roundTrips := func(count int) {
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
	roundTrips(rate) // a second's warm-up
	before := testenv.ProcThreads(pids...)
	roundTrips(n)
	after := testenv.ProcThreads(pids...)
	return float64(after.CPUNs-before.CPUNs) / 1e6 / float64(n), float64(after.Switches-before.Switches) / float64(n)
}

// startRelay starts a relay process and its echo process; it returns the
// relay's end of the agent's side, ready, and the relay's pid. Both end
// when the test does (their sockets close).
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
	var cmds []*exec.Cmd
	start := func(role string, env []string, files ...*os.File) {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), append(env, relayRoleEnv+"="+role, "EMBER_E2E_RELAY_SIZE="+strconv.Itoa(size))...)
		cmd.ExtraFiles, cmd.Stderr = files, os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	conn, err := net.FileConn(ours)
	if err != nil {
		b.Fatal(err)
	}
	// Closing the agent's side ends the relay, whose end ends the echo.
	b.Cleanup(func() {
		conn.Close()
		for _, cmd := range cmds {
			_ = cmd.Wait()
		}
	})
	start("relay", []string{"GOMAXPROCS=1"}, theirs, lf)
	start("echo", []string{"EMBER_E2E_RELAY_ADDR=" + ln.Addr().String()})
	var pid [4]byte // the relay says its pid once the echo process connected
	if _, err := io.ReadFull(conn, pid[:]); err != nil {
		b.Fatalf("relay: %v", err)
	}
	p := int(pid[0]) | int(pid[1])<<8 | int(pid[2])<<16 | int(pid[3])<<24
	if err := setSysmonSlack(p, 1_000_000); err != nil {
		b.Fatal(err)
	}
	return conn, p
}

// setSysmonSlack gives the Go runtime's monitor thread of process pid
// (its first thread after the main one) the timer slack the agent gives
// ember-init's (hostagent's sysmonSlack).
func setSysmonSlack(pid, ns int) error {
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return err
	}
	sysmon := 0
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil && tid > pid && (sysmon == 0 || tid < sysmon) {
			sysmon = tid
		}
	}
	if sysmon == 0 {
		return fmt.Errorf("process %d: no thread after its main one", pid)
	}
	return os.WriteFile(fmt.Sprintf("/proc/%d/timerslack_ns", sysmon), []byte(strconv.Itoa(ns)), 0)
}

// runRelayRole runs this process as relayFloor's relay or echo process.
func runRelayRole(role string) error {
	size, err := strconv.Atoi(os.Getenv("EMBER_E2E_RELAY_SIZE"))
	if err != nil {
		return err
	}
	buf := make([]byte, size)
	pass := func(from io.Reader, to io.Writer) error {
		if _, err := io.ReadFull(from, buf); err != nil {
			return err
		}
		_, err := to.Write(buf)
		return err
	}
	switch role {
	case "echo":
		c, err := net.Dial("tcp", os.Getenv("EMBER_E2E_RELAY_ADDR"))
		if err != nil {
			return err
		}
		for pass(c, c) == nil {
		}
		return nil
	case "relay":
		agent, err := net.FileConn(os.NewFile(3, "agent"))
		if err != nil {
			return err
		}
		ln, err := net.FileListener(os.NewFile(4, "listener"))
		if err != nil {
			return err
		}
		fn, err := ln.Accept()
		if err != nil {
			return err
		}
		ln.Close()
		p := os.Getpid()
		if _, err := agent.Write([]byte{byte(p), byte(p >> 8), byte(p >> 16), byte(p >> 24)}); err != nil {
			return err
		}
		for pass(agent, fn) == nil && pass(fn, agent) == nil {
		}
		return nil
	}
	return fmt.Errorf("%s=%q: want relay or echo", relayRoleEnv, role)
}
