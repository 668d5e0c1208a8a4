package hostagent

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/dispatchpb"
)

// A container's start lifts its quota and its instance's, instance first,
// and puts them back, container first, when its runtime is ready; a hot
// invocation changes nothing.
func TestStartBoostEndsWhenReady(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2, InitCPUBoost: 2, InitCPUBoostFor: time.Minute}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m128", pool.VersionKey("acme", "echo", "1"))
	for range 2 {
		resp, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`))
		if err != nil || resp.Status != dispatchpb.Status_STATUS_OK {
			t.Fatalf("dispatch: %v %v", resp, err)
		}
	}
	specs := h.rt.get(c.InstanceID).startedSpecs()
	if len(specs) != 1 || !specs[0].ReportReady {
		t.Fatalf("starts %+v: want one, asking for Ready", specs)
	}
	inst, child := "/ember/"+c.InstanceID, "/ember/"+c.InstanceID+"/"+specs[0].ContainerID
	// 128 MB: 0.1 vCPU for the function, 0.3 for its instance, which
	// booted boosted too.
	want := []string{inst + " 3000", inst + " 22000", child + " 20000", child + " 1000", inst + " 3000"}
	if got := h.cg.quotaLogOf(inst); !slices.Equal(got, want) {
		t.Fatalf("quota changes %q, want %q", got, want)
	}
}

// A runtime that never asks for an invocation keeps the boost no longer
// than InitCPUBoostFor.
func TestStartBoostIsBounded(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2, InitCPUBoost: 2, InitCPUBoostFor: 50 * time.Millisecond}, nil)
	c := h.claim("acme", "m128", pool.VersionKey("acme", "echo", "1"))
	resp, err := h.client.Dispatch(context.Background(), h.req(c.InstanceID, "acme", "echo", "no-ready"))
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK {
		t.Fatalf("dispatch: %v %v", resp, err)
	}
	inst := "/ember/" + c.InstanceID
	child := inst + "/" + h.rt.get(c.InstanceID).startedSpecs()[0].ContainerID
	want := []string{inst + " 3000", inst + " 22000", child + " 20000", child + " 1000", inst + " 3000"}
	var got []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) { // polling for the timer's end
		if got = h.cg.quotaLogOf(inst); len(got) == len(want) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("quota changes %q, want %q", got, want)
	}
	// The instance's boost ran out: its next start gets none.
	resp, err = h.client.Dispatch(context.Background(), h.req(c.InstanceID, "acme", "other", `{}`))
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER {
		t.Fatalf("second start: %v %v", resp, err)
	}
	if got := h.cg.quotaLogOf(inst); len(got) != len(want) {
		t.Fatalf("a start within the cooldown was boosted: %q", got)
	}
	if specs := h.rt.get(c.InstanceID).startedSpecs(); len(specs) != 2 || specs[1].ReportReady {
		t.Fatalf("starts %+v: want a second one, not asking for Ready", specs)
	}
}

// With the boost off, or no more than the function's share, quotas stay.
func TestStartBoostOff(t *testing.T) {
	for _, boost := range []float64{0, 0.1} {
		h := startHarness(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2, InitCPUBoost: boost}, nil)
		c := h.claim("acme", "m128", pool.VersionKey("acme", "echo", "1"))
		if _, err := h.client.Dispatch(context.Background(), h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
			t.Fatal(err)
		}
		if got := h.cg.quotaLog(); len(got) != 0 {
			t.Errorf("boost %g: quota changes %q", boost, got)
		}
		if h.rt.get(c.InstanceID).startedSpecs()[0].ReportReady {
			t.Errorf("boost %g: the start asked for Ready", boost)
		}
		h.stop()
	}
}

// Two starts on one instance at once: the instance stays lifted until the
// second ends (the kernel, and the fake, refuse an instance below a child).
func TestStartBoostsOverlap(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2, InitCPUBoost: 2, InitCPUBoostFor: 300 * time.Millisecond}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m128", pool.VersionKey("acme", "slow", "1"))
	// A's runtime is never ready: its boost lasts until the bound.
	if resp, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "slow", "no-ready")); err != nil || resp.Status != dispatchpb.Status_STATUS_OK {
		t.Fatalf("dispatch A: %v %v", resp, err)
	}
	if resp, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "quick", `{}`)); err != nil || resp.Status != dispatchpb.Status_STATUS_OK {
		t.Fatalf("dispatch B: %v %v", resp, err)
	}
	specs := h.rt.get(c.InstanceID).startedSpecs()
	inst := "/ember/" + c.InstanceID
	a, b := inst+"/"+specs[0].ContainerID, inst+"/"+specs[1].ContainerID
	want := []string{inst + " 3000", inst + " 22000", a + " 20000", b + " 20000", b + " 1000", a + " 1000", inst + " 3000"}
	var got []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) { // polling for A's bound
		if got = h.cg.quotaLogOf(inst); len(got) == len(want) {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("quota changes %q, want %q", got, want)
	}
}
