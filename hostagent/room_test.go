package hostagent

import (
	"context"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/internal/testenv"
)

// A demand on a full host retires idle instances to make room: a warm one
// beyond its class's target first, then a tenant's idle one; a claimed one
// never.
func TestDemandMakesRoom(t *testing.T) {
	rt := newFakeRuntime()
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2, RoomMinIdle: time.Nanosecond}, rt)
	ctx := context.Background()
	live := func(id string) bool { return rt.get(id) != nil }

	if err := h.store.RequestInstance(ctx, "m512", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an m512 instance on demand", func() bool { return len(h.warm("m512")) == 1 })
	m512 := h.warm("m512")[0]
	m128 := h.warm("m128")[0]

	// Full (2 of 2): the m512 is beyond its class's target (0), the m128
	// at its (1). The m512 gives its room to an m1024.
	if err := h.store.RequestInstance(ctx, "m1024", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an m1024 instance in the m512's room", func() bool { return len(h.warm("m1024")) == 1 })
	if live(m512) || !live(m128) {
		t.Fatalf("m512 live %v, m128 live %v: want the m512 retired and the m128 kept", live(m512), live(m128))
	}
	if n := rt.count(); n != 2 {
		t.Fatalf("%d instances, want 2 (MaxInstances)", n)
	}

	// acme's m1024 has run and is idle; bob holds the m128 claimed. A
	// demand for m256 takes acme's instance, never bob's.
	vk := pool.VersionKey("acme", "echo", "1")
	acme := h.claim("acme", "m1024", vk)
	if _, err := h.client.Dispatch(ctx, h.req(acme.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Release(ctx, acme, vk, true); err != nil {
		t.Fatal(err)
	}
	bob := h.claim("bob", "m128", "")
	if bob.InstanceID != m128 {
		t.Fatalf("bob claimed %s, want the m128 %s", bob.InstanceID, m128)
	}
	if err := h.store.RequestInstance(ctx, "m256", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an m256 instance in acme's room", func() bool { return len(h.warm("m256")) == 1 })
	if live(acme.InstanceID) || !live(m128) {
		t.Fatalf("acme's instance live %v, bob's live %v: want acme's retired and bob's kept", live(acme.InstanceID), live(m128))
	}

}
