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

// TestNewVersionBesideBusyOne: an invocation of the old $LATEST runs 3 s
// on an instance whose memory holds two containers; $LATEST is updated
// meanwhile and invoked: the new code starts in a second container on the
// same instance and answers while the old invocation still runs; a
// further invocation of the new code is a hot start there; the old
// invocation ends normally and its container is stopped afterwards.
func TestNewVersionBesideBusyOne(t *testing.T) {
	s := newStack(t, "m128=1")
	if _, err := s.admin.PutSubPool(s.ctx(), wire.SubPool{Name: "two", Tenant: tenant, MemoryMB: 512, MinWarm: 1, Max: 1}); err != nil {
		t.Fatal(err)
	}
	cfg := wire.FunctionConfig{MemoryMB: 256, TimeoutMs: 20000, SubPool: "two", Env: map[string]string{"CODE": "1"}}
	s.deploy("ver", "sleep", cfg)
	first, _, _ := invokeSleep(t, s, s.client, "ver", 1) // the instance now holds the old code, hot
	inst := instanceOf(first)

	type outcome struct {
		r    sleepResult
		err  error
		done time.Time
	}
	old := make(chan outcome, 1)
	go func() {
		res, err := s.client.Invoke(s.ctx(), "ver", "", []byte(`{"ms":3000,"stat":true}`))
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
	cfg.Env = map[string]string{"CODE": "2"} // a new $LATEST configuration
	cfg.SkipPreload = true
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
	o := <-old
	if o.err != nil || instanceOf(o.r) != inst {
		t.Fatalf("the old invocation: %+v %v", o.r, o.err)
	}
	if !o.done.After(newDone) {
		t.Fatal("the new code answered only after the old invocation ended")
	}
	testenv.Eventually(t, 15*time.Second, "the old container stopped after its invocation", func() bool {
		return strings.Contains(s.log(), "superseded by new code or settings (after its invocation ended)")
	})
}
