package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"

	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/image"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/sandbox"
)

// TestRealEmberInit runs the real ember-init (cmd/ember-init) as an
// instance's PID 1: it must say Hello on the socket and start a function
// container straight into a child cgroup handed over as fds, as uid 1000
// with no capabilities.
//
// Its shim is the image's ember-shim, or, in an image built from an
// ember-init alone, ember-init itself.
func TestRealEmberInit(t *testing.T) {
	withShim := filepath.Join(binDir, "real", "ember-init")
	if err := testenv.BuildInit(withShim); err != nil {
		t.Fatal(err)
	}
	alone := filepath.Join(binDir, "alone", "ember-init")
	if err := testenv.Build("cmd/ember-init", alone); err != nil {
		t.Fatal(err)
	}
	// exe: ember-init started again through /proc/self/exe.
	t.Run("ember-shim", func(t *testing.T) { realEmberInit(t, withShim, "ember-shim") })
	t.Run("ember-init alone", func(t *testing.T) { realEmberInit(t, alone, "exe") })
}

func realEmberInit(t *testing.T, bin, shimName string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	img, err := image.Ensure(ctx, daemon.Client, daemon.Namespace, bin)
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, img)
	id := fmt.Sprintf("t%d-m256-real-%s", os.Getpid(), shimName)
	spec := instanceSpec(t, id)
	fnDir := filepath.Join(spec.CodeDir, "fn1")
	if err := os.MkdirAll(fnDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fnDir, "bootstrap"), []byte("#!/bin/sh\nexec sleep 60\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	inst, err := rt.Create(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Destroy(context.Background(), id) })

	uc := dialInit(t, spec.SocketDir)
	conn := initproto.NewConn(uc)
	defer conn.Close()
	if err := uc.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	f, err := conn.Read()
	if err != nil {
		log, _ := os.ReadFile(spec.LogPath)
		t.Fatalf("read hello: %v\ninstance log:\n%s", err, log)
	}
	var hello initproto.Hello
	if f.Type != initproto.TypeHello || f.Decode(&hello) != nil || hello.InstanceID != id {
		t.Fatalf("first frame type %d header %s, want Hello from %s", f.Type, f.Header, id)
	}

	child, err := cgroup.Create(inst.CgroupPath, "fn1", rt.HostRootUID(), cgroup.Limits{MemoryBytes: 128 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer child.Remove()
	fds, names := child.FDs()
	start := initproto.StartContainer{ContainerID: "fn1", CodeDir: "fn1", FunctionName: "f", Version: "1",
		MemoryMB: 128, TimeoutMs: 3000, FDNames: names}
	if err := conn.Write(initproto.TypeStart, 1, start, nil, fds...); err != nil {
		t.Fatal(err)
	}
	child.CloseFDs()
	var started initproto.Started
	for {
		f, err := conn.Read()
		if err != nil {
			t.Fatalf("read started: %v", err)
		}
		if f.Type == initproto.TypeStarted && f.Seq == 1 {
			if err := f.Decode(&started); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if started.Error != "" || started.Pid == 0 {
		log, _ := os.ReadFile(spec.LogPath)
		t.Fatalf("Started %+v\ninstance log:\n%s", started, log)
	}

	// The child cgroup holds the container's shim (PID 1 of the
	// container's pid namespace, still root of the instance) and the
	// bootstrap it started, unprivileged. The shim is started first; the
	// bootstrap may take a moment.
	var procs []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		procs = strings.Fields(readTrim(t, filepath.Join(child.Path(cgroup.Unified), "cgroup.procs")))
		if len(procs) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // observing another process's fork
	}
	if len(procs) != 2 {
		t.Fatalf("child cgroup2 procs = %v, want the container's shim and bootstrap", procs)
	}
	shim, _ := strconv.Atoi(procs[0])
	pid, _ := strconv.Atoi(procs[1])
	if shim != started.Pid && pid == started.Pid {
		shim, pid = pid, shim
	}
	if got := statusField(t, uint32(shim), "Name"); got != shimName {
		t.Errorf("shim process name %q, want %s", got, shimName)
	}
	if got := statusField(t, uint32(shim), "CapBnd"); got != "0000000000000000" {
		t.Errorf("shim CapBnd = %s", got)
	}
	if got := statusField(t, uint32(shim), "Seccomp"); got != "2" {
		t.Errorf("shim Seccomp = %s", got)
	}
	// The bootstrap shows in the cgroup from its fork, before it dropped to
	// its uid and exec'd: wait for the drop.
	want := strconv.Itoa(sandbox.DefaultHostID+1000) + "\t"
	for deadline := time.Now().Add(10 * time.Second); ; {
		got := statusField(t, uint32(pid), "Uid")
		if strings.HasPrefix(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container process host Uid = %q, want %d", got, sandbox.DefaultHostID+1000)
		}
		time.Sleep(5 * time.Millisecond) // observing another process's setuid
	}
	if got := statusField(t, uint32(pid), "CapEff"); got != "0000000000000000" {
		t.Errorf("container CapEff = %s", got)
	}
	if got := statusField(t, uint32(pid), "NoNewPrivs"); got != "1" {
		t.Errorf("container NoNewPrivs = %s", got)
	}
	// Three pid namespaces deep: the host's, the instance's, its own.
	if got := strings.Fields(statusField(t, uint32(pid), "NSpid")); len(got) != 3 {
		t.Errorf("container NSpid = %v, want pids in three namespaces", got)
	}
	cg := readTrim(t, fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, want := range []string{":memory:/ember/" + id + "/fn1", "0::/ember/" + id + "/fn1"} {
		if !strings.Contains(cg, want) {
			t.Errorf("container /proc/pid/cgroup lacks %q:\n%s", want, cg)
		}
	}

	if err := rt.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	assertGone(t, rt, id)
}
