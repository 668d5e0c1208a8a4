package initd_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
	"golang.org/x/sys/unix"
)

// escaperScript starts a sleeper in a new session (out of reach of a
// process-group kill), then becomes the sleep example.
const escaperScript = `#!/bin/sh
setsid sleep 1000 &
echo "escaper: started a setsid sleeper"
exec "$LAMBDA_TASK_ROOT/sleep"
`

// cgroupProcs reads the pids in a cgroup2 directory.
func cgroupProcs(t *testing.T, dir string) []int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("cgroup.procs entry %q", f)
		}
		pids = append(pids, pid)
	}
	return pids
}

// sessionOf returns the session id of pid, or -1 if it is gone.
func sessionOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	sid, _ := strconv.Atoi(f[3]) // state ppid pgrp session
	return sid
}

// waitEscaped waits until the cgroup holds the container's shim, its
// bootstrap and a third process in a session of its own (the setsid'd
// sleeper), and returns the sleeper.
func waitEscaped(t *testing.T, dir string, shim int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := cgroupProcs(t, dir)
		if len(pids) == 3 && slices.Contains(pids, shim) {
			for _, other := range pids {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", other))
				if sid := sessionOf(other); strings.TrimSpace(string(comm)) == "sleep" && sid == other && sid != sessionOf(shim) {
					return other
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no setsid'd sleeper beside shim %d in the cgroup: %v", shim, pids)
		}
		time.Sleep(10 * time.Millisecond) // observing another process's setsid
	}
}

// TestTimeoutKillsEscapedChildren checks that a timeout kills, through the
// container's cgroup, a child that left the process group with setsid, so
// the respawned process never shares the cgroup with it; and that Stop
// leaves the cgroup empty.
func TestTimeoutKillsEscapedChildren(t *testing.T) {
	writeScript(t, "escaper", escaperScript, "sleep")
	name := fmt.Sprintf("ember-initd-escape-%d", os.Getpid())
	v2 := filepath.Join("/sys/fs/cgroup/unified", name)
	if err := os.Mkdir(v2, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(v2) }) // runs after the server has stopped
	dirFD, err := unix.Open(v2, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirFD)

	e := startServer(t, nil)
	c := e.dial(t)
	s := spec("esc", "escaper")
	s.FDNames = []string{initproto.FDCgroup2}
	st := c.mustStart(s, dirFD)
	if res, body := c.invoke("esc", "warm", 10*time.Second, `{"ms":1}`); res.Status != initproto.StatusOK {
		t.Fatalf("warm-up %+v %s", res, body)
	}
	sleeper := waitEscaped(t, v2, st.Pid)

	res, _ := c.invoke("esc", "slow", 300*time.Millisecond, `{"ms":20000}`)
	if res.Status != initproto.StatusTimeout || res.ErrorType != "Sandbox.Timedout" {
		t.Fatalf("result %+v", res)
	}
	if ev := c.exited("esc"); ev.Signal != "SIGKILL" {
		t.Fatalf("exited %+v", ev)
	}

	// The respawn waited for the cgroup to empty: only the new shim, its
	// bootstrap and their own new sleeper are there.
	res, body := c.invoke("esc", "after", 10*time.Second, `{"ms":5}`)
	if res.Status != initproto.StatusOK || res.InitDurationNs <= 0 || body != `{"slept_ms":5}` {
		t.Fatalf("after timeout: %+v %s", res, body)
	}
	pids := cgroupProcs(t, v2)
	if slices.Contains(pids, sleeper) || slices.Contains(pids, st.Pid) || len(pids) != 3 {
		t.Fatalf("cgroup after respawn %v (old shim %d, old sleeper %d)", pids, st.Pid, sleeper)
	}
	if sid := sessionOf(sleeper); sid == sleeper {
		if _, state := procStat(t, sleeper); state != 'Z' {
			t.Fatalf("old sleeper %d still running (state %c)", sleeper, state)
		}
	}

	// Stop kills the new sleeper too, though the bootstrap dies of SIGTERM.
	c.stop("esc")
	if pids := cgroupProcs(t, v2); len(pids) != 0 {
		t.Fatalf("cgroup after Stop: %v", pids)
	}
}
