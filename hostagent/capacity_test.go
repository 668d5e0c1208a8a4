package hostagent

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/internal/testenv"
)

// TestAgentNeverOvercommitsMemory: instances reserve their memory on the
// host; demand beyond the capacity is refused, whatever MaxInstances says.
func TestAgentNeverOvercommitsMemory(t *testing.T) {
	rt := newFakeRuntime()
	h := startHarness(t, Config{Pool: map[string]int{"m512": 1}, MaxInstances: 8,
		Capacity: pool.Resources{MemoryMB: 1200, MilliCPU: 2000}}, rt)
	ctx := context.Background()
	for _, class := range []string{"m512", "m512", "m128"} {
		if err := h.store.RequestInstance(ctx, class, ""); err != nil {
			t.Fatal(err)
		}
		if class == "m512" {
			// Demand for a class with an instance starting is coalesced:
			// wait for this one before asking again.
			testenv.Eventually(t, 10*time.Second, "m512 on demand", func() bool { return len(h.warm("m512")) >= 2 })
		}
	}
	// Demand is handled in order: the m128 arrives after the refused m512.
	testenv.Eventually(t, 10*time.Second, "m128 on demand", func() bool { return len(h.warm("m128")) == 1 })
	if n := len(h.warm("m512")); n != 2 {
		t.Fatalf("%d m512 instances on a 1200 MB host, want 2", n)
	}
	h.agent.reportUsed(ctx)
	ag, err := h.store.Agent(ctx, "agent-test")
	if err != nil {
		t.Fatal(err)
	}
	if ag.Used.MemoryMB != 2*512+128 || ag.Capacity.MemoryMB != 1200 || !ag.Capacity.Fits(ag.Used) {
		t.Fatalf("agent reports %+v used of %+v", ag.Used, ag.Capacity)
	}
}

// TestAgentSubPool: the agent keeps a sub-pool's minimum warm count, with
// the sub-pool's memory, never above its maximum, and refuses another
// tenant on its instances.
func TestAgentSubPool(t *testing.T) {
	rt := newFakeRuntime()
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 8,
		Capacity: pool.Resources{MemoryMB: 8192, MilliCPU: 4000}}, rt)
	ctx := context.Background()
	if _, err := h.store.PutSubPool(ctx, pool.SubPool{Name: "x", Tenant: "acme", MemoryMB: 768, MilliCPU: 1000, MinWarm: 2, Max: 3}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "two warm sub-pool instances", func() bool { return len(h.warm("sp-x")) == 2 })
	for range 3 { // demand past the maximum starts one more, never two
		if err := h.store.RequestInstance(ctx, "sp-x", "agent-test"); err != nil {
			t.Fatal(err)
		}
	}
	c := h.claim("acme", "sp-x", "")
	testenv.Eventually(t, 10*time.Second, "a third on demand", func() bool { return len(h.warm("sp-x")) == 2 })
	if err := h.store.RequestInstance(ctx, "sp-x", ""); err != nil {
		t.Fatal(err)
	}
	// Demand for m128 is handled after the one for sp-x above.
	if err := h.store.RequestInstance(ctx, "m128", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "m128 on demand", func() bool { return len(h.warm("m128")) == 2 })
	if n := rt.countClass("sp-x"); n != 3 {
		t.Fatalf("%d sub-pool instances, want 3 (its max)", n)
	}
	if mem := rt.memoryOf(c.InstanceID); mem != 768 {
		t.Fatalf("sub-pool instance memory %d MB, want 768", mem)
	}
	_, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "globex", "echo", `{}`))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("another tenant's dispatch: %v, want PermissionDenied", err)
	}
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatalf("the sub-pool's tenant: %v", err)
	}
}
