package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/registry"
)

// TestFunctionFailures: a handler error, a timeout and a crash are function
// results (not platform errors), and the function works again afterwards.
func TestFunctionFailures(t *testing.T) {
	s := newStack(t, "m128=2")
	s.deploy("fail", "fail", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 5000})
	s.deploy("sleep", "sleep", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 1000})
	s.deploy("exit", "exit", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 5000})

	invoke := func(fn, payload string) client.InvokeResult {
		t.Helper()
		r, err := s.client.Invoke(s.ctx(), fn, "", []byte(payload))
		if err != nil {
			t.Fatalf("invoke %s %s: platform error %v", fn, payload, err)
		}
		return r
	}

	r := invoke("fail", `{}`)
	if r.Status != "function_error" || r.ErrorType == "" || !strings.Contains(string(r.Payload), "boom") {
		t.Errorf("fail: status %s type %q payload %s, want function_error with the handler's error", r.Status, r.ErrorType, r.Payload)
	}

	start := time.Now()
	r = invoke("sleep", `{"ms": 5000}`)
	if r.Status != "timeout" {
		t.Errorf("sleep past its 1s timeout: status %s, want timeout", r.Status)
	}
	if el := time.Since(start); el > 2500*time.Millisecond {
		t.Errorf("timed-out invocation took %v; the 1s timeout was not enforced", el)
	}
	if r = invoke("sleep", `{"ms": 10}`); !r.OK() {
		t.Errorf("sleep after a timeout: status %s, want ok (the container is restarted)", r.Status)
	}

	if r = invoke("exit", `{"exit": true}`); r.Status != "crashed" {
		t.Errorf("exit: status %s, want crashed", r.Status)
	}
	if r = invoke("exit", `{"echo": 1}`); !r.OK() {
		t.Errorf("after the bootstrap exited: status %s %s, want ok (restarted at the next invocation)", r.Status, r.Payload)
	}

	// Through Kafka: a failing function's records are retried, then land in
	// the dead-letter topic; the offsets are committed, nothing is lost.
	s.createTopic("jobs", 2)
	if _, err := s.client.PutBinding(s.ctx(), wire.Binding{ID: "jobs", Function: "fail", Topic: "jobs",
		StartingPosition: "earliest", MaxRetryAttempts: new(1)}); err != nil {
		t.Fatal(err)
	}
	s.produce("jobs", ids(10), 0)
	s.waitNoLag("jobs", 10, time.Minute)
	dlq := s.readTopic("jobs.dlq")
	got := map[string]bool{}
	for _, m := range dlq {
		got[string(m.Value)] = true
		var attempts, status string
		for _, h := range m.Headers {
			switch h.Key {
			case consumers.HeaderAttempts:
				attempts = string(h.Value)
			case consumers.HeaderStatus:
				status = string(h.Value)
			}
		}
		if attempts != "2" || status != "function_error" {
			t.Errorf("dlq record %s: attempts %q status %q, want 2 and function_error", m.Value, attempts, status)
		}
	}
	for _, id := range ids(10) {
		if !got[id] {
			t.Errorf("record %s neither processed nor dead-lettered", id)
		}
	}
}

// TestBadInput: invalid packages, a binding to an unknown function, an
// oversized invoke payload and an oversized record each get a clear error,
// and nothing else is lost.
func TestBadInput(t *testing.T) {
	s := newStack(t, "m128=2")
	good, err := os.ReadFile(zips["kafka-echo"])
	if err != nil {
		t.Fatal(err)
	}
	mk := func(files map[string]os.FileMode, symlinks map[string]string) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		for name, mode := range files {
			h := &zip.FileHeader{Name: name}
			h.SetMode(mode)
			w, _ := zw.CreateHeader(h)
			_, _ = w.Write([]byte("#!/bin/sh\necho hi\n"))
		}
		for name, target := range symlinks {
			h := &zip.FileHeader{Name: name}
			h.SetMode(os.ModeSymlink | 0o777)
			w, _ := zw.CreateHeader(h)
			_, _ = w.Write([]byte(target))
		}
		_ = zw.Close()
		return b.Bytes()
	}
	for name, pkg := range map[string][]byte{
		"not a zip":              []byte("MZ this is not a zip file"),
		"zip slip":               mk(map[string]os.FileMode{"bootstrap": 0o755, "../../etc/evil": 0o644}, nil),
		"missing bootstrap":      mk(map[string]os.FileMode{"handler.sh": 0o755}, nil),
		"bootstrap not exec":     mk(map[string]os.FileMode{"bootstrap": 0o644}, nil),
		"symlink escaping root":  mk(map[string]os.FileMode{"bootstrap": 0o755}, map[string]string{"lib": "../../../etc"}),
		"bootstrap symlink away": mk(nil, map[string]string{"bootstrap": "/bin/sh"}),
	} {
		_, err := s.client.DeployFunction(s.ctx(), "bad", wire.FunctionConfig{MemoryMB: 128}, bytes.NewReader(pkg))
		if !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%s: deploy error %v, want Invalid", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := s.client.GetFunction(s.ctx(), "bad"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("a rejected package created a function: %v", err)
	}

	_, err = s.client.PutBinding(s.ctx(), wire.Binding{ID: "orphan", Function: "nope", Topic: "t"})
	if !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("binding to an unknown function: %v, want NotFound naming it", err)
	}

	if _, err := s.client.DeployFunction(s.ctx(), "echo", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 10000}, bytes.NewReader(good)); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 7<<20)
	if _, err := s.client.Invoke(s.ctx(), "echo", "", big); !errors.Is(err, client.ErrTooLarge) {
		t.Errorf("7 MiB invoke payload: %v, want TooLarge", err)
	}

	// A record whose Lambda event would exceed 6 MB goes to the dead-letter
	// topic without being invoked; the records around it are processed.
	s.createTopic("mixed", 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: "16777216"})
	bindEcho(t, s, "mixed", "mixed", 10)
	s.produce("mixed", []string{"before", strings.Repeat("y", 5<<20), "after"}, 16<<20)
	s.waitNoLag("mixed", 3, time.Minute)
	got := seen(t, s.readTopic("mixed.results"))
	if got["before"] == 0 || got["after"] == 0 {
		t.Errorf("records around the oversized one: %v", got)
	}
	dlq := s.readTopic("mixed.dlq")
	if len(dlq) != 1 || len(dlq[0].Value) != 5<<20 {
		t.Fatalf("dlq holds %d records, want the oversized one", len(dlq))
	}
	for _, h := range dlq[0].Headers {
		if h.Key == consumers.HeaderErrorType && string(h.Value) != consumers.ErrorTypePayloadTooLarge {
			t.Errorf("dlq error type %q", h.Value)
		}
	}
}

// TestDisconnectKeepsWarmInstance: API callers that hang up mid-invocation
// do not destroy the warm instance: the invocation runs to its end and the
// next one is hot (the gateway detaches from its callers the same way).
func TestDisconnectKeepsWarmInstance(t *testing.T) {
	s := newStack(t, "m128=2")
	s.deploy("sleep", "sleep", wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 5000})
	if res, err := s.client.Invoke(s.ctx(), "sleep", "", []byte(`{"ms":1}`)); err != nil || !res.OK() {
		t.Fatalf("first invoke: %+v, %v", res, err)
	}
	idle := func() {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) { // polling the pool
			st, err := s.admin.Status(s.ctx())
			busy := 0
			for _, o := range st.Occupancy {
				busy += o.Busy
			}
			if err == nil && busy == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("instances still busy: %+v, %v", st.Occupancy, err)
			}
		}
	}
	hangUp := func(do func(ctx context.Context) error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := do(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a caller hanging up after 300 ms of a 1.5 s invocation: %v", err)
		}
	}
	for range 3 {
		hangUp(func(ctx context.Context) error {
			_, err := s.client.Invoke(ctx, "sleep", "", []byte(`{"ms":1500}`))
			return err
		})
		idle()
		if res, err := s.client.Invoke(s.ctx(), "sleep", "", []byte(`{"ms":1}`)); err != nil || res.Start != "hot" {
			t.Fatalf("after an API caller hung up, the next invoke: %+v, %v; want hot", res, err)
		}
	}
}
