package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
)

// destRecord is the part of a destination record the test reads.
type destRecord struct {
	RequestContext struct {
		RequestID              string `json:"requestId"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	RequestPayload struct {
		RawPath string `json:"rawPath"`
	} `json:"requestPayload"`
}

// 10,000 asynchronous invocations, one in ten failing: each ends in the
// success or failure destination its outcome calls for, after the
// configured retry, and none is lost when emberd is SIGKILLed while they
// run.
func TestAsyncInvocations(t *testing.T) {
	s := newStack(t, "m128=4", "--async-retry-delay", "100ms")
	s.deploy("web", "http-echo", wire.FunctionConfig{TimeoutMs: 10000})
	s.createTopic("ok-out", 4)
	s.createTopic("fail-out", 4)
	one := 1
	if _, err := s.client.PutAsyncConfig(s.ctx(), "web", wire.AsyncConfig{MaxRetryAttempts: &one,
		OnSuccess: "topic:ok-out", OnFailure: "topic:fail-out"}); err != nil {
		t.Fatal(err)
	}
	n := 10000
	if v := os.Getenv("EMBER_ASYNC_N"); v != "" { // a smaller run, when working on it
		n, _ = strconv.Atoi(v)
	}
	began := time.Now()
	ids := make([]string, n)
	var next, accepted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				payload := fmt.Sprintf(`{"rawPath":"/i/%d"}`, i)
				if i%10 == 0 {
					payload = fmt.Sprintf(`{"rawPath":"/i/%d","queryStringParameters":{"fail":"1"}}`, i)
				}
				// While emberd is down, retry: an invocation counts once it is accepted.
				for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) { // pacing retries
					id, err := s.client.InvokeAsync(s.ctx(), "web", "", []byte(payload))
					if err == nil {
						ids[i] = id
						accepted.Add(1)
						break
					}
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("invocation %d: %w", i, err)
						return
					}
				}
			}
		}()
	}
	// SIGKILL emberd halfway through, while invocations are queued and running.
	for accepted.Load() < int64(n/2) {
		time.Sleep(10 * time.Millisecond) // polling the submitters' progress
	}
	s.kill()
	t.Logf("SIGKILL after %d invocations were accepted", accepted.Load())
	s.start()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d asynchronous invocations accepted in %v", n, time.Since(began).Round(time.Millisecond))

	// Every invocation, known by the path in its payload, ends in the
	// destination its outcome calls for. An invocation may end twice: run
	// again after the crash, or accepted though its answer was lost.
	var ended map[int]string
	dups := 0
	for deadline := time.Now().Add(3 * time.Minute); ; time.Sleep(500 * time.Millisecond) { // polling progress
		ended, dups = map[int]string{}, 0
		for _, topic := range []string{"ok-out", "fail-out"} {
			for _, m := range s.readTopic(topic) {
				var r destRecord
				if err := json.Unmarshal(m.Value, &r); err != nil {
					t.Fatalf("%s record %q: %v", topic, m.Value, err)
				}
				var i int
				if _, err := fmt.Sscanf(r.RequestPayload.RawPath, "/i/%d", &i); err != nil {
					t.Fatalf("%s record for %q", topic, r.RequestPayload.RawPath)
				}
				outcome := topic + " " + r.RequestContext.Condition
				if prev, ok := ended[i]; ok {
					dups++
					if prev != outcome {
						t.Fatalf("invocation %d ended as %s and as %s", i, prev, outcome)
					}
				}
				ended[i] = outcome
			}
		}
		if len(ended) == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d invocations reached a destination", len(ended), n)
		}
	}
	for i := range n {
		want := "ok-out Success"
		if i%10 == 0 {
			want = "fail-out RetriesExhausted"
		}
		if ended[i] != want {
			t.Fatalf("invocation %d ended as %q, want %q", i, ended[i], want)
		}
	}
	t.Logf("%d invocations, each in its destination, %v after the first was queued; %d ended twice (the SIGKILL's)",
		n, time.Since(began).Round(time.Millisecond), dups)

	// The records say the same.
	failed, err := s.client.Invocation(s.ctx(), ids[10])
	if err != nil || failed.State != "failed" || failed.Attempts != 2 || failed.Condition != "RetriesExhausted" || failed.Delivered != "topic:"+topic("fail-out") {
		t.Fatalf("failed invocation: %+v %v", failed, err)
	}
	ok, err := s.client.Invocation(s.ctx(), ids[11])
	if err != nil || ok.State != "succeeded" || ok.Attempts != 1 || ok.Status != "ok" || len(ok.Result) == 0 {
		t.Fatalf("succeeded invocation: %+v %v", ok, err)
	}
	if _, err := s.tenantClient("async-other").Invocation(s.ctx(), ids[11]); err == nil {
		t.Fatal("another tenant read the invocation")
	}
}

// A destination can be another function: failures of web go to sink,
// invoked asynchronously with web's destination record, whose own
// successes go to a topic.
func TestAsyncDestinationFunction(t *testing.T) {
	s := newStack(t, "m128=2")
	s.deploy("web", "http-echo", wire.FunctionConfig{TimeoutMs: 10000})
	s.deploy("sink", "http-echo", wire.FunctionConfig{TimeoutMs: 10000})
	s.createTopic("sink-out", 1)
	zero := 0
	if _, err := s.client.PutAsyncConfig(s.ctx(), "sink", wire.AsyncConfig{OnSuccess: "topic:sink-out"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.PutAsyncConfig(s.ctx(), "web", wire.AsyncConfig{MaxRetryAttempts: &zero, OnFailure: "function:sink"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.PutAsyncConfig(s.ctx(), "web", wire.AsyncConfig{OnFailure: "function:nope"}); err == nil {
		t.Fatal("a destination function that does not exist was accepted")
	}
	const n = 20
	for i := range n {
		if _, err := s.client.InvokeAsync(s.ctx(), "web", "", fmt.Appendf(nil, `{"rawPath":"/d/%d","queryStringParameters":{"fail":"1"}}`, i)); err != nil {
			t.Fatal(err)
		}
	}
	// From the terminal: queue one that succeeds, then read its record.
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "ember"), args...)
		cmd.Env = append(os.Environ(), "EMBER_API=http://"+s.api, "EMBER_API_KEY="+s.tenantKey)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ember %s: %v", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out))
	}
	id := cli("invoke", "sink", "--async", "--payload", `{"rawPath":"/cli"}`)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) { // polling the invocation
		out := cli("invocation", "get", id)
		if strings.Contains(out, `"state": "succeeded"`) && strings.Contains(out, `"delivered": "topic:`+topic("sink-out")+`"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ember invocation get %s:\n%s", id, out)
		}
	}

	var got map[string]bool
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) { // polling progress
		got = map[string]bool{}
		for _, m := range s.readTopic("sink-out") {
			// sink's record wraps web's: sink's request payload is web's failure record.
			var r struct {
				RequestContext struct{ FunctionArn, Condition string } `json:"requestContext"`
				RequestPayload struct {
					RequestContext struct {
						FunctionArn string `json:"functionArn"`
						Condition   string `json:"condition"`
					} `json:"requestContext"`
					RequestPayload struct {
						RawPath string `json:"rawPath"`
					} `json:"requestPayload"`
				} `json:"requestPayload"`
			}
			if err := json.Unmarshal(m.Value, &r); err != nil {
				t.Fatal(err)
			}
			inner := r.RequestPayload
			if inner.RequestContext.FunctionArn == "" {
				continue // the CLI's own invocation of sink
			}
			if r.RequestContext.FunctionArn != tenant+"/sink" || r.RequestContext.Condition != "Success" ||
				inner.RequestContext.FunctionArn != tenant+"/web" || inner.RequestContext.Condition != "RetriesExhausted" {
				t.Fatalf("sink's record: %s", m.Value)
			}
			got[inner.RequestPayload.RawPath] = true
		}
		if len(got) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d failures reached sink and its destination", len(got), n)
		}
	}
}
