package e2e

import (
	"errors"
	"math"
	"net/http"
	"testing"
	"time"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
)

// TestAliasSplit: an alias that sends 10% to version 2 beside version 1,
// bound to a topic with batch size 1: 10,000 records are 10,000
// invocations, each result names the version that ran, and version 2 ran
// 10% ± 3 points of them. A sync invoke through the alias names its
// version too; an alias in use cannot be deleted; moving the alias whole
// to version 2 sends every later invocation there.
func TestAliasSplit(t *testing.T) {
	const n = 10000
	s := newStack(t, "m128=2")
	cfg := wire.FunctionConfig{MemoryMB: 128, TimeoutMs: 10000, Env: map[string]string{"RELEASE": "1"}}
	s.deploy("echo", "kafka-echo", cfg)
	if v, err := s.client.PublishVersion(s.ctx(), "echo"); err != nil || v.Version != "1" {
		t.Fatalf("publish 1: %+v, %v", v, err)
	}
	cfg.Env["RELEASE"] = "2"
	s.deploy("echo", "kafka-echo", cfg)
	if v, err := s.client.PublishVersion(s.ctx(), "echo"); err != nil || v.Version != "2" {
		t.Fatalf("publish 2: %+v, %v", v, err)
	}
	a, err := s.client.CreateAlias(s.ctx(), wire.Alias{Name: "prod", Function: "echo", Version: "1", Extra: map[string]float64{"2": 0.1}})
	if err != nil || a.Version != "1" || a.Extra["2"] != 0.1 {
		t.Fatalf("create alias: %+v, %v", a, err)
	}
	res, err := s.client.Invoke(s.ctx(), "echo", "prod", []byte(`{"records":{}}`))
	if err != nil || (res.Version != "1" && res.Version != "2") {
		t.Fatalf("invoke through the alias: %+v, %v", res, err)
	}

	s.createTopic("split", 4)
	if _, err := s.client.PutBinding(s.ctx(), wire.Binding{ID: "split", Function: "echo", Qualifier: "prod", Topic: "split",
		BatchSize: 1, StartingPosition: "earliest", ResultTopic: "split.results"}); err != nil {
		t.Fatalf("bind to the alias: %v", err)
	}
	var ce *client.APIError
	if err := s.client.DeleteAlias(s.ctx(), "echo", "prod"); !errors.As(err, &ce) || ce.StatusCode != http.StatusConflict {
		t.Fatalf("deleting an alias a binding uses: %v, want 409", err)
	}
	s.produce("split", ids(n), 0)
	s.waitNoLag("split", n, 4*time.Minute)
	results := s.readTopic("split.results")
	got := seen(t, results)
	for _, id := range ids(n) {
		if got[id] != 1 {
			t.Errorf("record %s came back %d times", id, got[id])
		}
	}
	byVersion := map[string]int{}
	for _, m := range results {
		byVersion[header(m.Headers, consumers.HeaderVersion)]++
	}
	share := float64(byVersion["2"]) / n
	t.Logf("10,000 invocations of prod: version 1 %d, version 2 %d (%.2f%%)", byVersion["1"], byVersion["2"], share*100)
	if byVersion["1"]+byVersion["2"] != len(results) || math.Abs(share-0.1) > 0.03 {
		t.Fatalf("split %v over %d results, want version 2 at 10 ± 3%%", byVersion, len(results))
	}

	// The whole alias moves to version 2: every later invocation runs it.
	if _, err := s.client.UpdateAlias(s.ctx(), wire.Alias{Name: "prod", Function: "echo", Version: "2"}); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		res, err := s.client.Invoke(s.ctx(), "echo", "prod", []byte(`{"records":{}}`))
		if err != nil || res.Version != "2" {
			t.Fatalf("invoke after moving the alias: version %q, %v", res.Version, err)
		}
	}
}
