package hostagent

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

// TestInstancesDefinedAhead: once the warming pool is filled, each pool
// class has an instance defined ahead; an on-demand boot of the class
// starts from it (the same spec), the refill after its first dispatch
// defines the next, and the agent's stop removes what is left.
func TestInstancesDefinedAhead(t *testing.T) {
	rt := newFakeRuntime()
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1, "m512": 0}, MaxInstances: 4}, rt)
	testenv.Eventually(t, 10*time.Second, "an instance defined ahead per class", func() bool {
		return h.aheadReady("m128") && h.aheadReady("m512")
	})
	ctx := context.Background()
	if err := h.store.RequestInstance(ctx, "m512", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an m512 instance on demand", func() bool { return len(h.warm("m512")) == 1 })
	if n := rt.startedDefined(); n != 1 {
		t.Fatalf("%d boots started from an instance defined ahead, want 1", n)
	}
	c := h.claim("acme", "m512", "")
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the next m512 defined ahead", func() bool { return h.aheadReady("m512") })
	h.stop()
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if len(rt.undefined) != 2 {
		t.Fatalf("the stop removed %v, want the two instances defined ahead", rt.undefined)
	}
}

// TestDefinedAheadGivesUpItsSlot: on a host whose last uid-range slot is
// held by an instance defined ahead of another class, a boot takes that
// slot (the instance defined ahead is removed) instead of failing or
// going past MaxInstances' ranges.
func TestDefinedAheadGivesUpItsSlot(t *testing.T) {
	rt := newFakeRuntime()
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1, "m512": 0}, MaxInstances: 2, RoomMinIdle: time.Hour}, rt)
	// One live instance and one slot left: the smaller class's definition
	// takes it, the other class has none.
	testenv.Eventually(t, 10*time.Second, "m128 defined ahead", func() bool { return h.aheadReady("m128") })
	if n := rt.countDefined("m512"); n != 0 {
		t.Fatalf("%d m512 defined ahead with no slot left", n)
	}
	rt.mu.Lock()
	var ahead string
	for id := range rt.defined {
		ahead = id
	}
	rt.mu.Unlock()
	if err := h.store.RequestInstance(context.Background(), "m512", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an m512 instance on demand", func() bool { return len(h.warm("m512")) == 1 })
	testenv.Eventually(t, 10*time.Second, "m128's instance defined ahead removed", func() bool {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return slices.Contains(rt.undefined, ahead)
	})
	h.agent.mu.Lock()
	defer h.agent.mu.Unlock()
	if len(h.agent.ahead) != 0 {
		t.Fatalf("instances defined ahead on a full host: %v", h.agent.ahead)
	}
	slots := map[int]bool{}
	for _, in := range h.agent.insts {
		if in.slot >= 2 || slots[in.slot] {
			t.Fatalf("instance %s in slot %d (slots in use %v, MaxInstances 2)", in.id, in.slot, slots)
		}
		slots[in.slot] = true
	}
}

// TestDefinitionUnderWayGivesUpItsSlot: a boot that needs the last slot
// while the instance defined ahead in it is still being defined takes the
// slot at once (no room made, no failure); the definition, once it
// returns, is removed.
func TestDefinitionUnderWayGivesUpItsSlot(t *testing.T) {
	rt := newFakeRuntime()
	rt.defineGate = make(chan struct{})
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1, "m512": 0}, MaxInstances: 2, RoomMinIdle: time.Hour}, rt)
	testenv.Eventually(t, 10*time.Second, "m128's definition under way", func() bool {
		h.agent.mu.Lock()
		defer h.agent.mu.Unlock()
		ah := h.agent.ahead["m128"]
		return ah != nil && !ah.ready
	})
	if err := h.store.RequestInstance(context.Background(), "m512", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an m512 instance on demand", func() bool { return len(h.warm("m512")) == 1 })
	close(rt.defineGate) // the definition returns
	testenv.Eventually(t, 10*time.Second, "the late definition removed", func() bool {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return len(rt.undefined) == 1 && len(rt.defined) == 0
	})
}
