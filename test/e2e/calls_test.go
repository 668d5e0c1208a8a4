package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/testenv"
)

// callerResult is examples/caller's response.
type callerResult struct {
	Nonce         string          `json:"nonce"`
	MemoryIntact  bool            `json:"memory_intact"`
	CallStatus    int             `json:"call_status"`
	FunctionError string          `json:"function_error"`
	Result        json.RawMessage `json:"result"`
	WaitedUS      int64           `json:"waited_us"`
	LogStream     string          `json:"log_stream"`
}

func invokeCaller(t *testing.T, s *stack, payload string) (callerResult, client.InvokeResult) {
	t.Helper()
	res, err := s.client.Invoke(s.ctx(), "caller", "", []byte(payload))
	if err != nil || !res.OK() {
		t.Fatalf("invoke caller %s: %+v %v", payload, res, err)
	}
	var out callerResult
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("caller: %s: %v", res.Payload, err)
	}
	return out, res
}

// newCallStack is a stack where every function of the tenant runs in its
// sub-pool of one 512 MB instance, with examples/caller deployed as
// "caller" (timeout callerMs) and examples/sleep as "slow": the parked
// caller keeps 128 MB there, the call gets 128 MB beside it.
func newCallStack(tb testing.TB, callerMs int64, extra ...string) *stack {
	tb.Helper()
	s := newStack(tb, "m128=2", extra...)
	if _, err := s.admin.PutSubPool(s.ctx(), wire.SubPool{Name: "one", Tenant: tenant, MemoryMB: 512, Max: 1}); err != nil {
		tb.Fatal(err)
	}
	s.deploy("caller", "caller", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: callerMs, SubPool: "one"})
	s.deploy("slow", "sleep", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 10000, SubPool: "one"})
	return s
}

// TestCallWaitsWithoutInstance: a function (examples/caller) calls another
// (sleep, 3 s) through the Invoke API its runtime serves and waits. Its
// invocation is parked meanwhile (its container frozen) and its instance
// goes back to the pool: the call itself runs there during the wait (the
// tenant's sub-pool has that one instance). The caller then resumes on it
// with the nonce and the 8 MB it held before the call, and returns them
// with the call's result. A call whose function fails comes back as
// Lambda reports it (200, X-Amz-Function-Error), one the platform cannot
// run as a 502; a call that outlasts the caller's deadline times it out.
func TestCallWaitsWithoutInstance(t *testing.T) {
	s := newCallStack(t, 30000)
	s.deploy("failing", "fail", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 10000, SubPool: "one"})

	type outcome struct {
		res client.InvokeResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := s.client.Invoke(s.ctx(), "caller", "", []byte(`{"function":"slow","payload":{"ms":3000,"stat":true},"mb":8}`))
		done <- outcome{res, err}
	}()
	logPath := filepath.Join(s.dir, "emberd-0.log")
	var parkedLine string
	testenv.Eventually(t, 20*time.Second, "the caller parked", func() bool {
		b, _ := os.ReadFile(logPath)
		for line := range strings.SplitSeq(string(b), "\n") {
			if strings.Contains(line, "invocation parked") {
				parkedLine = line
				return true
			}
		}
		return false
	})
	t.Log(parkedLine)
	var parkedAt struct {
		Instance string `json:"instance"`
	}
	if err := json.Unmarshal([]byte(parkedLine), &parkedAt); err != nil || parkedAt.Instance == "" {
		t.Fatalf("parked line: %v", err)
	}
	// The kernel freezes asynchronously: the caller's container shows frozen soon after.
	testenv.Eventually(t, 2*time.Second, "the caller's container frozen", func() bool {
		return frozenContainers(t, parkedAt.Instance) == 1
	})
	o := <-done
	if o.err != nil || !o.res.OK() {
		t.Fatalf("caller: %+v %v", o.res, o.err)
	}
	if n := frozenContainers(t, parkedAt.Instance); n != 0 {
		t.Errorf("%d frozen containers on the caller's instance after it resumed, want 0", n)
	}
	var out callerResult
	if err := json.Unmarshal(o.res.Payload, &out); err != nil {
		t.Fatalf("caller: %s: %v", o.res.Payload, err)
	}
	var slept sleepResult
	if err := json.Unmarshal(out.Result, &slept); err != nil || out.CallStatus != 200 || out.FunctionError != "" || slept.SleptMS != 3000 {
		t.Fatalf("the call's result: status %d error %q body %s (%v)", out.CallStatus, out.FunctionError, out.Result, err)
	}
	if !out.MemoryIntact {
		t.Error("the caller's memory changed across the wait")
	}
	if want := fmt.Sprintf("caller: nonce %s before calling slow", out.Nonce); !strings.Contains(string(o.res.LogTail), want) {
		t.Errorf("the caller returned nonce %s, not the one it printed before the wait:\n%s", out.Nonce, o.res.LogTail)
	}
	if out.WaitedUS < 3_000_000 {
		t.Errorf("the caller waited %d us for a 3 s call", out.WaitedUS)
	}
	callerAt := instanceOf(sleepResult{LogStream: out.LogStream})
	if callerAt != parkedAt.Instance || instanceOf(slept) != callerAt {
		t.Errorf("caller on %s, parked on %s, its call on %s: want all on one instance", callerAt, parkedAt.Instance, instanceOf(slept))
	}
	// From the agent's log: the call ran on the caller's instance after the
	// caller was parked and before it resumed.
	if !ranWhileParked(t, logPath, parkedAt.Instance, "slow") {
		t.Errorf("the call did not run on %s while the caller was parked:\n%s", parkedAt.Instance, s.log())
	}

	// A function error comes back as Lambda's Invoke API reports it; a
	// call the platform cannot run (no such function) as a 502.
	failed, _ := invokeCaller(t, s, `{"function":"failing"}`)
	if failed.CallStatus != 200 || failed.FunctionError != "Unhandled" || !strings.Contains(string(failed.Result), "boom") {
		t.Errorf("a failing call: status %d error %q body %s", failed.CallStatus, failed.FunctionError, failed.Result)
	}
	missing, _ := invokeCaller(t, s, `{"function":"nosuch"}`)
	if missing.CallStatus != 502 {
		t.Errorf("a call of a missing function: status %d body %s, want 502", missing.CallStatus, missing.Result)
	}

	// The caller's deadline holds while it waits: a call that outlasts it
	// ends the caller as a timeout.
	s.deploy("hasty", "caller", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 2000, SubPool: "one"})
	start := time.Now()
	res, err := s.client.Invoke(s.ctx(), "hasty", "", []byte(`{"function":"slow","payload":{"ms":6000}}`))
	if err != nil || res.Status != "timeout" {
		t.Fatalf("a caller whose call outlasts its 2 s timeout: %+v %v, want a timeout", res, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the timed-out caller answered after %v", took)
	}
	// Its instance is fine: the caller runs again there.
	again, _ := invokeCaller(t, s, `{"function":"slow","payload":{"ms":1}}`)
	if again.CallStatus != 200 || instanceOf(sleepResult{LogStream: again.LogStream}) != callerAt {
		t.Errorf("after the timeout: status %d on %s, want 200 on %s", again.CallStatus, again.LogStream, callerAt)
	}
}

// frozenContainers counts the containers of instance whose cgroup is frozen
// (cgroup2's cgroup.events "frozen 1").
func frozenContainers(t *testing.T, instance string) int {
	t.Helper()
	var files []string
	for _, pattern := range []string{"/sys/fs/cgroup/unified/*/" + instance + "/*/cgroup.events", "/sys/fs/cgroup/*/" + instance + "/*/cgroup.events"} {
		m, _ := filepath.Glob(pattern)
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no container cgroups of instance %s", instance)
	}
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), "frozen 1") {
			n++
		}
	}
	return n
}

// ranWhileParked reports whether the agent's log shows an invocation of fn
// done on instance between the parking of an invocation there and its
// resume (log times, ms).
func ranWhileParked(t *testing.T, logPath, instance, fn string) bool {
	t.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		Message    string    `json:"message"`
		Instance   string    `json:"instance"`
		Function   string    `json:"function"`
		Invocation string    `json:"invocation"`
		Time       time.Time `json:"time"`
	}
	var parked, resumed time.Time
	var parkedInv string
	var done []time.Time
	for raw := range strings.SplitSeq(string(b), "\n") {
		var l line
		if json.Unmarshal([]byte(raw), &l) != nil || l.Instance != instance {
			continue
		}
		switch {
		case strings.HasPrefix(l.Message, "invocation parked") && parkedInv == "":
			parked, parkedInv = l.Time, l.Invocation
		case l.Message == "invocation resumed" && l.Invocation == parkedInv && resumed.IsZero():
			resumed = l.Time
		case l.Message == "invocation done" && l.Function == fn:
			done = append(done, l.Time)
		}
	}
	for _, d := range done {
		if !parked.IsZero() && !resumed.IsZero() && !d.Before(parked) && !d.After(resumed) {
			return true
		}
	}
	return false
}

// TestCallCheckpointed: with --criu, a caller that waits longer than
// --checkpoint-after is checkpointed (its process dumped and killed, its
// memory given back) and restored into its container for the resume: it
// still returns the nonce and the 8 MB it held before the call.
func TestCallCheckpointed(t *testing.T) {
	s := newCallStack(t, 30000, "--criu", testenv.Tool("criu"), "--checkpoint-after", "300ms")
	for round := range 2 { // a restored process is checkpointed again
		res, err := s.client.Invoke(s.ctx(), "caller", "", []byte(`{"function":"slow","payload":{"ms":2000},"mb":8}`))
		if err != nil || !res.OK() {
			t.Fatalf("round %d: %+v %v\n%s\n%s", round, res, err, res.LogTail, s.log())
		}
		var out callerResult
		if err := json.Unmarshal(res.Payload, &out); err != nil {
			t.Fatalf("round %d: %s: %v", round, res.Payload, err)
		}
		var slept sleepResult
		if err := json.Unmarshal(out.Result, &slept); err != nil || out.CallStatus != 200 || slept.SleptMS != 2000 {
			t.Fatalf("round %d: the call's result: status %d body %s (%v)", round, out.CallStatus, out.Result, err)
		}
		if !out.MemoryIntact {
			t.Errorf("round %d: the caller's memory changed across the checkpoint", round)
		}
		if want := fmt.Sprintf("caller: nonce %s before calling slow", out.Nonce); !strings.Contains(string(res.LogTail), want) {
			t.Errorf("round %d: the caller returned nonce %s, not the one it printed before the wait:\n%s", round, out.Nonce, res.LogTail)
		}
		b, err := os.ReadFile(filepath.Join(s.dir, "emberd-0.log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, msg := range []string{"invocation checkpointed", "invocation restored and resumed"} {
			if !logHas(string(b), res.InvocationID, msg) {
				t.Errorf("round %d: no %q for invocation %s:\n%s", round, msg, res.InvocationID, s.log())
			}
		}
		// The second round runs in the process the first restored: no
		// process ended, no new one started.
		if strings.Contains(string(b), "container process exited") || round == 1 && res.Start != "hot" {
			t.Errorf("round %d: start %s; a container process ended or was replaced:\n%s", round, res.Start, s.log())
		}
	}
}

// logHas reports whether a log line of invocation id says msg.
func logHas(log, id, msg string) bool {
	for line := range strings.SplitSeq(log, "\n") {
		if strings.Contains(line, `"invocation":"`+id+`"`) && strings.Contains(line, msg) {
			return true
		}
	}
	return false
}
