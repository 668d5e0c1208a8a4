package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/testenv"
)

// TestNewVersionBesideBusyOne: on an instance whose memory holds two
// containers, an invocation of version 1 runs 3 s; version 2, published
// meanwhile, starts on the same instance in a second container and answers
// while version 1 still runs. Then the same with $LATEST replaced while its
// old configuration runs: the new code starts beside it, a further
// invocation of it is a hot start there, the old invocation ends normally
// and its (superseded) container is stopped afterwards.
func TestNewVersionBesideBusyOne(t *testing.T) {
	s := newStack(t, "m128=1")
	if _, err := s.admin.PutSubPool(s.ctx(), wire.SubPool{Name: "two", Tenant: tenant, MemoryMB: 512, MinWarm: 1, Max: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := wire.FunctionConfig{MemoryMB: 256, TimeoutMs: 20000, SubPool: "two", Env: map[string]string{"CODE": "1"}}
	s.deploy("ver", "sleep", cfg)
	if _, err := s.client.PublishVersion(s.ctx(), "ver"); err != nil { // version 1
		t.Fatal(err)
	}
	first, _, _ := invokeSleep(t, s, s.client, "ver", 1) // the instance now holds the old code, hot
	inst := instanceOf(first)

	type outcome struct {
		r    sleepResult
		err  error
		done time.Time
	}
	// runLong invokes qualifier for 3 s and waits until the instance is busy with it.
	runLong := func(qualifier string) chan outcome {
		old := make(chan outcome, 1)
		go func() {
			res, err := s.client.Invoke(s.ctx(), "ver", qualifier, []byte(`{"ms":3000,"stat":true}`))
			o := outcome{err: err, done: time.Now()}
			if err == nil && !res.OK() {
				o.err = fmt.Errorf("%s: %s", res.Status, res.Payload)
			}
			if err == nil {
				_ = json.Unmarshal(res.Payload, &o.r)
			}
			old <- o
		}()
		testenv.Eventually(t, 10*time.Second, "the old invocation's claim", func() bool {
			st, err := s.client.Status(s.ctx())
			if err != nil {
				return false
			}
			for _, o := range st.Occupancy {
				if o.Class == "sp-two" && o.Busy == 1 {
					return true
				}
			}
			return false
		})
		return old
	}
	finished := func(old chan outcome, answered time.Time) {
		t.Helper()
		o := <-old
		if o.err != nil || instanceOf(o.r) != inst {
			t.Fatalf("the old invocation: %+v %v", o.r, o.err)
		}
		if !o.done.After(answered) {
			t.Fatal("the new code answered only after the old invocation ended")
		}
	}

	// Published versions: version 1 runs 3 s; version 2 is published and
	// invoked meanwhile: it starts on the same instance, beside it.
	v1 := runLong("1")
	cfg.Env = map[string]string{"CODE": "2"}
	cfg.SkipPreload = true
	s.deploy("ver", "sleep", cfg)
	if _, err := s.client.PublishVersion(s.ctx(), "ver"); err != nil { // version 2
		t.Fatal(err)
	}
	res2, err := s.client.Invoke(s.ctx(), "ver", "2", []byte(`{"stat":true}`))
	v2Done := time.Now()
	var r2 sleepResult
	if err != nil || !res2.OK() || json.Unmarshal(res2.Payload, &r2) != nil || instanceOf(r2) != inst || res2.Start == "hot" {
		t.Fatalf("version 2 while version 1 runs: %+v %v, want a new container on %q", res2, err, inst)
	}
	finished(v1, v2Done)

	// $LATEST replaced while its old configuration runs: the old container
	// is superseded, and stopped only once its invocation ended.
	old := runLong("")
	cfg.Env = map[string]string{"CODE": "3"} // a new $LATEST configuration
	s.deploy("ver", "sleep", cfg)
	newer, res, _ := invokeSleep(t, s, s.client, "ver", 1)
	newDone := time.Now()
	if instanceOf(newer) != inst || res.Start == "hot" {
		t.Fatalf("the new code ran on %q (start %s), want a new container on %q", instanceOf(newer), res.Start, inst)
	}
	again, res2, _ := invokeSleep(t, s, s.client, "ver", 1)
	if instanceOf(again) != inst || res2.Start != "hot" {
		t.Fatalf("the new code again: %q start %s, want hot on %q", instanceOf(again), res2.Start, inst)
	}
	finished(old, newDone)
	testenv.Eventually(t, 15*time.Second, "the old container stopped after its invocation", func() bool {
		return strings.Contains(s.log(), "superseded by new code or settings (after its invocation ended)")
	})
}
