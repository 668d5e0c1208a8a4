package initd_test

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/hostagent/initd"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/internal/testenv"
)

// writeScript adds a code directory whose bootstrap is a shell script, next
// to a copy of an example binary it may exec.
func writeScript(t *testing.T, name, script, withBinary string) {
	t.Helper()
	dir := filepath.Join(codeMount, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if withBinary != "" {
		b, err := os.ReadFile(filepath.Join(codeMount, withBinary, "bootstrap"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, withBinary), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bootstrap"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestInitError(t *testing.T) {
	writeScript(t, "initfail", `#!/bin/sh
echo "initfail: cannot load config"
busybox wget -q -O /dev/null --header 'Lambda-Runtime-Function-Error-Type: Runtime.ConfigError' \
  --post-data '{"errorMessage":"no config","errorType":"Runtime.ConfigError"}' \
  "http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error"
exit 1
`, "")
	e := startServer(t, nil)
	c := e.dial(t)
	c.mustStart(spec("if", "initfail"))
	for i := range 2 { // every respawn fails the same way
		res, body := c.invoke("if", fmt.Sprintf("i-%d", i), 10*time.Second, `{}`)
		if res.Status != initproto.StatusFunctionError || res.ErrorType != "Runtime.ConfigError" ||
			!strings.Contains(body, "no config") {
			t.Fatalf("invoke %d: %+v %s", i, res, body)
		}
		if !strings.Contains(string(res.LogTail), "initfail: cannot load config") {
			t.Fatalf("log tail %q", res.LogTail)
		}
		c.exited("if")
	}
}

func TestResponseTooLarge(t *testing.T) {
	e := startServer(t, func(c *initd.Config) { c.MaxResponseBytes = 1000 })
	c := e.dial(t)
	c.mustStart(spec("big", "exit"))
	res, body := c.invoke("big", "b-1", 10*time.Second, `{"pad":"`+strings.Repeat("x", 2000)+`"}`)
	if res.Status != initproto.StatusFunctionError || res.ErrorType != "Function.ResponseSizeTooLarge" ||
		!strings.Contains(body, "(1000 bytes)") {
		t.Fatalf("%+v %s", res, body)
	}
	// aws-lambda-go gives up on a 413 and exits; the next invoke respawns.
	res, body = c.invoke("big", "b-2", 10*time.Second, `{"small":1}`)
	if res.Status != initproto.StatusOK || body != `{"small":1}` {
		t.Fatalf("after too large: %+v %s", res, body)
	}
}

// TestPID1ReapsOrphans runs the real ember-init binary as PID 1 of a new pid
// namespace (so it reaps with wait4(-1)) and checks that a function's
// orphaned grandchild, re-parented to it, does not stay a zombie, while
// container exits still reach their containers.
func TestPID1ReapsOrphans(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ember-init")
	if err := testenv.BuildInit(bin); err != nil {
		t.Fatal(err)
	}
	writeScript(t, "orphaner", `#!/bin/sh
sh -c 'sleep 0.3 &'
echo "orphaner: left an orphan"
exec "$LAMBDA_TASK_ROOT/exit"
`, "exit")

	dir, err := os.MkdirTemp("", "initd-pid1-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	var stderr lockedBuffer
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", bin,
		"-instance-id", "pid1", "-socket-dir", sock, "-code-mount", codeMount,
		"-task-dir", filepath.Join(dir, "task"), "-tmp-dir", filepath.Join(dir, "tmp"), "-log-level", "debug")
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("ember-init output:\n%s", stderr.String())
		}
	}()

	var uc *net.UnixConn
	deadline := time.Now().Add(10 * time.Second)
	for {
		uc, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: filepath.Join(sock, initproto.SocketName), Net: "unix"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ember-init socket never appeared: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // polling for a socket another process creates
	}
	c := newClient(t, uc)
	if c.hello.Pid != 1 {
		t.Fatalf("ember-init is pid %d in its namespace, want 1", c.hello.Pid)
	}
	c.mustStart(spec("orph", "orphaner"))         // Started.Pid is in the instance's pid namespace
	initKids, _ := childrenOf(t, cmd.Process.Pid) // unshare --fork's only child is ember-init
	if len(initKids) != 1 {
		t.Fatalf("unshare children %v", initKids)
	}
	initHostPid := initKids[0]

	res, body := c.invoke("orph", "o-1", 10*time.Second, `{"a":1}`)
	if res.Status != initproto.StatusOK || body != `{"a":1}` {
		t.Fatalf("%+v %s", res, body)
	}
	// ember-init's only child is the container's shim, PID 1 of the
	// container's own pid namespace: the orphaned sleep is re-parented to
	// the shim, which must reap it once it exits, leaving only the
	// bootstrap as its child.
	initChildren, _ := childrenOf(t, initHostPid)
	if len(initChildren) != 1 {
		t.Fatalf("children of ember-init %v, want the container's shim", initChildren)
	}
	shimHostPid := initChildren[0]
	deadline = time.Now().Add(5 * time.Second)
	sawOrphan := false
	for {
		kids, zombies := childrenOf(t, shimHostPid)
		if len(kids) > 1 {
			sawOrphan = true
		}
		if sawOrphan && len(kids) == 1 && zombies == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of the shim %v (zombies %d, saw orphan %v)", kids, zombies, sawOrphan)
		}
		time.Sleep(20 * time.Millisecond) // observing another process's children
	}
	// A container exit still reaches its container through the reaper.
	res, _ = c.invoke("orph", "o-2", 10*time.Second, `{"exit":true}`)
	if res.Status != initproto.StatusCrashed {
		t.Fatalf("crash under PID 1: %+v", res)
	}
	if ev := c.exited("orph"); ev.ExitCode != 3 {
		t.Fatalf("exited %+v", ev)
	}
}

// procStat returns the ppid and state of pid.
func procStat(t *testing.T, pid int) (int, byte) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+2:])
	ppid, _ := strconv.Atoi(f[1])
	return ppid, f[0][0]
}

// childrenOf lists the pids whose parent is ppid and counts zombies among them.
func childrenOf(t *testing.T, ppid int) (kids []int, zombies int) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, state := procStat(t, pid); pp == ppid {
			kids = append(kids, pid)
			if state == 'Z' {
				zombies++
			}
		}
	}
	return kids, zombies
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
