package initd_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/ember-run/ember/hostagent/initd"
	"github.com/ember-run/ember/hostagent/initproto"
	"golang.org/x/sys/unix"
)

func kafkaPayload(t testing.TB, ids ...string) string {
	t.Helper()
	ev := events.KafkaEvent{EventSource: "aws:kafka", Records: map[string][]events.KafkaRecord{}}
	for i, id := range ids {
		r := events.KafkaRecord{Topic: "orders", Partition: int64(i % 2), Offset: int64(i),
			Value: base64.StdEncoding.EncodeToString([]byte(id))}
		k := fmt.Sprintf("orders-%d", i%2)
		ev.Records[k] = append(ev.Records[k], r)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHotInvokeKafkaEcho runs as the agent does (Invoke and Result in the
// wire format) and as an agent that predates it (JSON headers; one whose
// instances outlive an agent downgrade).
func TestHotInvokeKafkaEcho(t *testing.T) {
	t.Run("wire", func(t *testing.T) { testHotInvokeKafkaEcho(t, true) })
	t.Run("json", func(t *testing.T) { testHotInvokeKafkaEcho(t, false) })
}

func testHotInvokeKafkaEcho(t *testing.T, wire bool) {
	e := startServer(t, nil)
	dial := e.dialJSON
	if wire {
		dial = e.dial
	}
	c := dial(t)
	if c.hello.InstanceID != "inst-test" || c.hello.Pid != os.Getpid() || !c.hello.Wire {
		t.Fatalf("hello %+v", c.hello)
	}
	c.mustStart(spec("echo", "kafka-echo"))

	before := time.Now().UnixNano()
	res, body := c.invoke("echo", "inv-1", 10*time.Second, kafkaPayload(t, "id-1", "id-2", "id-3"))
	if res.Status != initproto.StatusOK || res.Error != "" || res.ID != "inv-1" {
		t.Fatalf("result %+v body %s", res, body)
	}
	var out struct {
		Records int      `json:"records"`
		IDs     []string `json:"ids"`
	}
	mustJSON(t, body, &out)
	if out.Records != 3 || strings.Join(out.IDs, ",") != "id-1,id-3,id-2" {
		t.Fatalf("response %s", body)
	}
	if res.InitDurationNs <= 0 || res.HandlerStartUnixNs < before || res.DurationNs <= 0 {
		t.Fatalf("timing %+v", res)
	}
	if !strings.Contains(string(res.LogTail), "kafka-echo: batch of 3 records from 2 partitions") {
		t.Fatalf("log tail %q", res.LogTail)
	}

	// Warm: same process, no init, and only this invocation's output.
	for i := range 20 {
		res, body = c.invoke("echo", fmt.Sprintf("hot-%d", i), 10*time.Second, kafkaPayload(t, "id-9"))
		if res.Status != initproto.StatusOK || res.InitDurationNs != 0 || !strings.Contains(body, `"id-9"`) {
			t.Fatalf("hot invoke %d: %+v %s", i, res, body)
		}
		if n := strings.Count(string(res.LogTail), "kafka-echo:"); n != 1 {
			t.Fatalf("hot invoke %d: log tail has %d lines: %q", i, n, res.LogTail)
		}
	}
	if !strings.Contains(e.output.String(), "echo ") || !strings.Contains(e.output.String(), "batch of 1 records") {
		t.Fatalf("output not forwarded with prefix: %q", e.output.String())
	}
}

func TestFunctionError(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	c.mustStart(spec("fail", "fail"))
	for i := range 2 { // the container survives a function error
		res, body := c.invoke("fail", fmt.Sprintf("f-%d", i), 10*time.Second, `{}`)
		if res.Status != initproto.StatusFunctionError || res.ErrorType != "errorString" || res.Error != "" {
			t.Fatalf("result %+v body %s", res, body)
		}
		var doc struct{ ErrorMessage, ErrorType string }
		mustJSON(t, body, &doc)
		if doc.ErrorMessage != "boom" {
			t.Fatalf("error document %s", body)
		}
		if !strings.Contains(string(res.LogTail), "fail: about to fail") {
			t.Fatalf("log tail %q", res.LogTail)
		}
	}
	select {
	case f := <-c.events:
		t.Fatalf("unexpected event %d: %s", f.Type, f.Header)
	default:
	}
}

func TestTimeoutKillsAndRespawns(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	st := c.mustStart(spec("sleepy", "sleep"))
	// Warm it up so the timeout below hits a running handler.
	if res, body := c.invoke("sleepy", "warm", 10*time.Second, `{"ms":1}`); res.Status != initproto.StatusOK {
		t.Fatalf("warm-up %+v %s", res, body)
	}
	t0 := time.Now()
	res, _ := c.invoke("sleepy", "slow", 300*time.Millisecond, `{"ms":20000}`)
	if res.Status != initproto.StatusTimeout || res.ErrorType != "Sandbox.Timedout" {
		t.Fatalf("result %+v", res)
	}
	if el := time.Since(t0); el > 3*time.Second {
		t.Fatalf("timeout took %v", el)
	}
	if res.DurationNs < int64(200*time.Millisecond) {
		t.Fatalf("duration %v", time.Duration(res.DurationNs))
	}
	if !strings.Contains(string(res.LogTail), "sleep: sleeping 20000 ms") {
		t.Fatalf("log tail %q", res.LogTail)
	}
	ev := c.exited("sleepy")
	if ev.Signal != "SIGKILL" {
		t.Fatalf("exited %+v", ev)
	}
	if err := unix.Kill(st.Pid, 0); err != unix.ESRCH {
		t.Fatalf("old process %d still there: %v", st.Pid, err)
	}
	res, body := c.invoke("sleepy", "after", 10*time.Second, `{"ms":5}`)
	if res.Status != initproto.StatusOK || res.InitDurationNs <= 0 || body != `{"slept_ms":5}` {
		t.Fatalf("after timeout: %+v %s", res, body)
	}
}

func TestCrashRespawns(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	c.mustStart(spec("ex", "exit"))
	res, body := c.invoke("ex", "e-1", 10*time.Second, `{"exit":true}`)
	if res.Status != initproto.StatusCrashed || res.ErrorType != "Runtime.ExitError" || !strings.Contains(body, "exit status 3") {
		t.Fatalf("result %+v %s", res, body)
	}
	if !strings.Contains(string(res.LogTail), "exit: exiting with status 3") {
		t.Fatalf("log tail %q", res.LogTail)
	}
	if ev := c.exited("ex"); ev.ExitCode != 3 || ev.Signal != "" {
		t.Fatalf("exited %+v", ev)
	}
	res, body = c.invoke("ex", "e-2", 10*time.Second, `{"hello":"again"}`)
	if res.Status != initproto.StatusOK || body != `{"hello":"again"}` || res.InitDurationNs <= 0 {
		t.Fatalf("after crash: %+v %s", res, body)
	}
}

func TestIsolation(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	s := spec("who", "whoami")
	s.Env = map[string]string{"GREETING": "hi", "AWS_LAMBDA_RUNTIME_API": "evil:1"}
	c.mustStart(s)
	res, body := c.invoke("who", "w-1", 10*time.Second, `{}`)
	if res.Status != initproto.StatusOK {
		t.Fatalf("result %+v %s", res, body)
	}
	var who struct {
		UID, GID     int
		Status       map[string]string
		TaskRoot     string `json:"task_root"`
		TaskWritable bool   `json:"task_writable"`
		TaskWriteErr string `json:"task_write_err"`
		TmpWritable  bool   `json:"tmp_writable"`
		Cwd          string
		Env          map[string]string
	}
	mustJSON(t, body, &who)
	zero := "0000000000000000"
	if who.UID != 1000 || who.GID != 1000 {
		t.Errorf("uid/gid %d/%d", who.UID, who.GID)
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"} {
		if who.Status[k] != zero {
			t.Errorf("%s = %q", k, who.Status[k])
		}
	}
	if who.Status["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q", who.Status["NoNewPrivs"])
	}
	if who.TaskRoot != e.cfg.TaskDir || who.Cwd != e.cfg.TaskDir {
		t.Errorf("task root %q cwd %q", who.TaskRoot, who.Cwd)
	}
	if who.TaskWritable || !strings.Contains(who.TaskWriteErr, "read-only file system") {
		t.Errorf("task dir writable=%v err=%q", who.TaskWritable, who.TaskWriteErr)
	}
	if !who.TmpWritable {
		t.Errorf("tmp not writable")
	}
	api := who.Env["AWS_LAMBDA_RUNTIME_API"]
	if !strings.HasPrefix(api, "127.0.0.1:") {
		t.Errorf("AWS_LAMBDA_RUNTIME_API = %q", api)
	}
	for k, want := range map[string]string{
		"GREETING": "hi", "_HANDLER": "bootstrap", "AWS_LAMBDA_FUNCTION_NAME": "whoami",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128", "AWS_REGION": "local", "TZ": ":UTC",
		"HOME": e.cfg.TmpDir, "LAMBDA_TASK_ROOT": e.cfg.TaskDir,
	} {
		if who.Env[k] != want {
			t.Errorf("env %s = %q, want %q", k, who.Env[k], want)
		}
	}
	// The mounts live only in the container's namespace.
	if _, err := os.Stat(filepath.Join(e.cfg.TaskDir, "bootstrap")); !os.IsNotExist(err) {
		t.Errorf("task dir bind leaked into the host namespace: %v", err)
	}
}

func TestCgroupFDs(t *testing.T) {
	name := fmt.Sprintf("ember-initd-test-%d", os.Getpid())
	v2 := filepath.Join("/sys/fs/cgroup/unified", name)
	v1 := filepath.Join("/sys/fs/cgroup/pids", name)
	for _, d := range []string{v2, v1} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("create cgroup: %v", err)
		}
		t.Cleanup(func() { _ = os.Remove(d) }) // runs after the server has stopped
	}
	dirFD, err := unix.Open(v2, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dirFD)
	tasksFD, err := unix.Open(filepath.Join(v1, "tasks"), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tasksFD)

	e := startServer(t, nil)
	c := e.dial(t)
	s := spec("cg", "exit")
	s.FDNames = []string{initproto.FDCgroup2, initproto.FDTasksPrefix + "pids"}
	st := c.mustStart(s, dirFD, tasksFD)
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cg), "0::/"+name+"\n") || !strings.Contains(string(cg), ":pids:/"+name+"\n") {
		t.Fatalf("child cgroups:\n%s", cg)
	}
	// A respawned process joins the same cgroups.
	if res, _ := c.invoke("cg", "x", 10*time.Second, `{"exit":true}`); res.Status != initproto.StatusCrashed {
		t.Fatalf("crash: %+v", res)
	}
	if res, _ := c.invoke("cg", "y", 10*time.Second, `{}`); res.Status != initproto.StatusOK {
		t.Fatalf("respawn: %+v", res)
	}
	procs, err := os.ReadFile(filepath.Join(v2, "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.Fields(string(procs))) != 2 { // the new shim and its bootstrap
		t.Fatalf("cgroup2 procs after respawn: %q", procs)
	}
	c.stop("cg")
}

func TestStopUnknownAndBadStart(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	st := c.mustStart(spec("s", "exit"))
	if again := c.mustStart(spec("s", "exit")); again.Pid != st.Pid {
		t.Fatalf("repeat start spawned a new process: %d vs %d", again.Pid, st.Pid)
	}
	c.stop("s")
	if err := unix.Kill(st.Pid, 0); err != unix.ESRCH {
		t.Fatalf("process %d alive after Stop: %v", st.Pid, err)
	}
	res, _ := c.invoke("s", "after-stop", 5*time.Second, `{}`)
	if res.Error == "" || res.Status != "" {
		t.Fatalf("invoke after stop: %+v", res)
	}
	c.stop("never-existed") // success
	select {
	case f := <-c.events:
		t.Fatalf("Stop produced an event %d: %s", f.Type, f.Header)
	default:
	}

	if st := c.start(spec("bad", "../etc")); st.Error == "" {
		t.Fatal("start with a non-local code dir succeeded")
	}
	if st := c.start(spec("missing", "no-such-example")); st.Error == "" || !strings.Contains(st.Error, "bootstrap") {
		t.Fatalf("start of missing code: %+v", st)
	}
	if res, _ := c.invoke("missing", "m", 5*time.Second, `{}`); res.Error == "" {
		t.Fatalf("invoke of a failed start: %+v", res)
	}
}

func TestNewConnectionReplacesOld(t *testing.T) {
	e := startServer(t, nil)
	c1 := e.dial(t)
	c1.mustStart(spec("k", "exit"))
	c2 := e.dial(t)
	select {
	case <-c1.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("old connection not closed")
	}
	// The container outlived the old connection; events go to the new one.
	if res, body := c2.invoke("k", "k-1", 10*time.Second, `{"v":1}`); res.Status != initproto.StatusOK || body != `{"v":1}` {
		t.Fatalf("%+v %s", res, body)
	}
	c2.invoke("k", "k-2", 10*time.Second, `{"exit":true}`)
	c2.exited("k")
}

// TestOrphanTimeout: a new connection's Hello lists the containers held (an
// agent that restarted finds them), and the server ends, stopping them,
// once no agent has been connected for OrphanTimeout, but never while one
// is.
func TestOrphanTimeout(t *testing.T) {
	const orphan = time.Second
	e := startServer(t, func(c *initd.Config) { c.OrphanTimeout = orphan })
	// The socket was renamed into place once listening (what the agent
	// watches for): nothing else is left in its directory.
	if names := dirNames(t, e.cfg.SocketDir); !slices.Equal(names, []string{initproto.SocketName}) {
		t.Fatalf("socket dir holds %v", names)
	}
	c1 := e.dial(t)
	if len(c1.hello.Containers) != 0 {
		t.Fatalf("hello of a new server lists %v", c1.hello.Containers)
	}
	c1.mustStart(spec("b", "sleep"))
	c1.mustStart(spec("a", "exit"))
	c1.conn.Close()
	<-c1.closed
	c2 := e.dial(t)
	if want := []string{"a", "b"}; !slices.Equal(c2.hello.Containers, want) {
		t.Fatalf("hello lists %v, want %v", c2.hello.Containers, want)
	}
	// Connected for twice the timeout: still serving.
	if res, body := c2.invoke("b", "b-1", 10*time.Second, fmt.Sprintf(`{"ms":%d}`, 2*orphan.Milliseconds())); res.Status != initproto.StatusOK {
		t.Fatalf("invoke while connected: %+v %s", res, body)
	}
	select {
	case <-e.ended:
		t.Fatal("the server ended while an agent was connected")
	default:
	}
	c2.conn.Close()
	select {
	case <-e.ended:
	case <-time.After(10 * time.Second):
		t.Fatalf("the server still runs 10 s after its agent left (orphan timeout %v)", orphan)
	}
	if names := dirNames(t, e.cfg.SocketDir); len(names) != 0 {
		t.Fatalf("socket dir holds %v after the server ended", names)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestConcurrentContainers(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	c.mustStart(spec("a", "sleep"))
	c.mustStart(spec("b", "exit"))
	done := make(chan initproto.Result, 1)
	go func() {
		res, _ := c.invoke("a", "a-1", 10*time.Second, `{"ms":1500}`)
		done <- res
	}()
	// While a sleeps, b answers promptly.
	t0 := time.Now()
	for i := range 3 {
		if res, _ := c.invoke("b", fmt.Sprintf("b-%d", i), 10*time.Second, `{}`); res.Status != initproto.StatusOK {
			t.Fatalf("b: %+v", res)
		}
	}
	if time.Since(t0) > time.Second {
		t.Fatalf("b waited for a: %v", time.Since(t0))
	}
	if res := <-done; res.Status != initproto.StatusOK {
		t.Fatalf("a: %+v", res)
	}
}

// BenchmarkHotInvoke measures a warm Invoke frame -> GET /next -> handler ->
// POST response -> Result frame round trip through the Runtime API.
func BenchmarkHotInvoke(b *testing.B) {
	e := startServer(b, nil)
	c := e.dial(b)
	c.mustStart(spec("bench", "exit"))
	if res, _ := c.invoke("bench", "warm", 10*time.Second, `{"n":1}`); res.Status != initproto.StatusOK {
		b.Fatalf("warm-up %+v", res)
	}
	var toNext time.Duration
	cpu0 := selfCPU(b)
	for b.Loop() {
		sent := time.Now()
		res, _ := c.invoke("bench", "b", 10*time.Second, `{"n":1}`)
		if res.Status != initproto.StatusOK {
			b.Fatalf("%+v", res)
		}
		toNext += time.Duration(res.HandlerStartUnixNs - sent.UnixNano())
	}
	b.ReportMetric(float64(toNext.Nanoseconds())/float64(b.N), "ns-to-next/op")
	// The server and this client share the process: its CPU time is
	// ember-init's side of the round trip plus the client's framing.
	b.ReportMetric(float64((selfCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// selfCPU is the test process's CPU time so far (user and system).
func selfCPU(tb testing.TB) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestPreloadStartsAheadOfTheFirstInvoke: a container created without its
// process (DeferSpawn) and then pre-loaded answers only once its runtime
// asks for an invocation; the first invocation is then hot (no init).
func TestPreloadStartsAheadOfTheFirstInvoke(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	sp := spec("echo", "kafka-echo")
	sp.DeferSpawn = true
	if st := c.start(sp); st.Error != "" || st.Pid != 0 {
		t.Fatalf("deferred start: %+v", st)
	}
	st := c.start(initproto.StartContainer{ContainerID: "echo", Preload: true})
	if st.Error != "" || st.Pid <= 0 {
		t.Fatalf("pre-load: %+v", st)
	}
	res, body := c.invoke("echo", "inv-1", 10*time.Second, kafkaPayload(t, "id-1"))
	if res.Status != initproto.StatusOK || res.InitDurationNs != 0 || !strings.Contains(body, `"id-1"`) {
		t.Fatalf("first invoke after the pre-load: %+v %s; want ok with no init", res, body)
	}
}

// A start that asks for it (ReportReady) gets a Ready event at its
// process's first GET /next, ahead of that invocation's result; one that
// does not gets none.
func TestReadyEvent(t *testing.T) {
	e := startServer(t, nil)
	c := e.dial(t)
	sp := spec("ready", "kafka-echo")
	sp.ReportReady = true
	c.mustStart(sp)
	c.mustStart(spec("quiet", "kafka-echo"))
	if res, body := c.invoke("ready", "inv-1", 10*time.Second, kafkaPayload(t, "a")); res.Status != initproto.StatusOK {
		t.Fatalf("result %+v body %s", res, body)
	}
	select {
	case f := <-c.events:
		var ev initproto.Ready
		if f.Type != initproto.TypeReady || f.Decode(&ev) != nil || ev.ContainerID != "ready" {
			t.Fatalf("event type %d %+v, want Ready of container ready", f.Type, ev)
		}
	default:
		t.Fatal("no Ready event before the first invocation's result")
	}
	if res, body := c.invoke("quiet", "inv-2", 10*time.Second, kafkaPayload(t, "b")); res.Status != initproto.StatusOK {
		t.Fatalf("result %+v body %s", res, body)
	}
	select {
	case f := <-c.events:
		t.Fatalf("event type %d for a start that did not ask", f.Type)
	default:
	}
}
