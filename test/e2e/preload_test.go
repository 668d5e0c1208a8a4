package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
)

// TestPreloadOnDeploy: updating $LATEST and publishing a version load the
// new code on the idle instance that ran the old one, so the first
// invocation after each is a hot start.
func TestPreloadOnDeploy(t *testing.T) {
	s := newStack(t, "m128=2")
	cfg := wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 5000, Env: map[string]string{"RELEASE": "1"}}
	s.deploy("sleep", "sleep", cfg)
	invoke := func(q string) (string, time.Duration) {
		t.Helper()
		began := time.Now()
		res, err := s.client.Invoke(s.ctx(), "sleep", q, []byte(`{"ms":1}`))
		if err != nil || !res.OK() {
			t.Fatalf("invoke %q: %+v, %v", q, res, err)
		}
		return res.Start, time.Since(began)
	}
	firstStart, firstTook := invoke("")
	start, hotTook := invoke("")
	if start != "hot" {
		t.Fatalf("second invoke: %s, want hot", start)
	}

	cfg.Env["RELEASE"] = "2" // a new $LATEST: a new container
	if f := s.deploy("sleep", "sleep", cfg); f.Preloaded != 1 {
		t.Fatalf("deploy pre-loaded on %d instances, want the 1 that ran the old $LATEST", f.Preloaded)
	}
	start, took := invoke("")
	if start != "hot" {
		t.Fatalf("first invoke after the deploy: %s, want hot", start)
	}
	t.Logf("first invoke: %s in %v; then hot in %v; first invoke after a deploy, pre-loaded: %s in %v",
		firstStart, firstTook.Round(time.Microsecond), hotTook.Round(time.Microsecond), start, took.Round(time.Microsecond))

	v, err := s.client.PublishVersion(s.ctx(), "sleep")
	if err != nil || v.Preloaded != 1 {
		t.Fatalf("publish: %+v, %v; want it pre-loaded on 1 instance", v, err)
	}
	if start, _ := invoke(v.Version); start != "hot" {
		t.Fatalf("first invoke of the published version: %s, want hot", start)
	}
	if start, _ := invoke(""); start != "hot" {
		t.Fatalf("$LATEST after the publish: %s, want hot (both containers stay)", start)
	}
}

// BenchmarkFirstInvokeAfterDeploy: the first invocation after a deploy that
// changes $LATEST, with the pre-load and without it (--no-preload: the
// instance starts the new container on that invocation), alternating, in
// one run; medians of 7 each.
func BenchmarkFirstInvokeAfterDeploy(b *testing.B) {
	s := newStack(b, "m128=2")
	cfg := wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 5000, Env: map[string]string{"RELEASE": "0"}}
	s.deploy("sleep", "sleep", cfg)
	first := func() (string, time.Duration) {
		began := time.Now()
		res, err := s.client.Invoke(s.ctx(), "sleep", "", []byte(`{"ms":1}`))
		if err != nil || !res.OK() {
			b.Fatalf("invoke: %+v, %v", res, err)
		}
		return res.Start, time.Since(began)
	}
	first()
	var with, without []time.Duration
	for i := range 14 {
		cfg.Env["RELEASE"] = fmt.Sprint(i + 1)
		cfg.SkipPreload = i%2 == 1
		s.deploy("sleep", "sleep", cfg)
		start, took := first()
		if cfg.SkipPreload {
			without = append(without, took)
		} else {
			if start != "hot" {
				b.Fatalf("round %d: pre-loaded, but the first invoke was %s", i, start)
			}
			with = append(with, took)
		}
	}
	w, wo := median(with), median(without)
	report(b, "first invoke after a deploy, pre-loaded (ms)", ms(w), "ms")
	report(b, "first invoke after a deploy, not pre-loaded (ms)", ms(wo), "ms")
	report(b, "pre-loaded / not pre-loaded", float64(w)/float64(wo), "x")
}
