package hostagent

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/internal/testenv"
)

// A demand on a full host retires idle instances to make room: a warm one
// beyond its class's target first, then a tenant's idle one; one a
// scheduler claimed never, and none when all of them would not make room.
func TestDemandMakesRoom(t *testing.T) {
	rt := newFakeRuntime()
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2, RoomMinIdle: time.Nanosecond,
		Capacity: pool.Resources{MemoryMB: 1536, MilliCPU: 8000}}, rt)
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

	// bob claimed the m1024 (the agent sees it warm: no dispatch yet);
	// acme's m128 has run and is idle. The claimed one comes first in the
	// order, and Redis refuses to retire it: acme's goes.
	bob := h.claim("bob", "m1024", "")
	vk := pool.VersionKey("acme", "echo", "1")
	acme := h.claim("acme", "m128", vk)
	if _, err := h.client.Dispatch(ctx, h.req(acme.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Release(ctx, acme, vk, true); err != nil {
		t.Fatal(err)
	}
	cands, enough := h.agent.roomCandidates("m256", time.Now())
	if ids := instanceIDs(cands); !enough || !slices.Equal(ids, []string{bob.InstanceID, acme.InstanceID}) {
		t.Fatalf("candidates for m256 %v (enough %v), want bob's claimed m1024 then acme's m128", ids, enough)
	}
	if err := h.store.RequestInstance(ctx, "m256", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an m256 instance in acme's room", func() bool { return len(h.warm("m256")) == 1 })
	if live(acme.InstanceID) || !live(bob.InstanceID) {
		t.Fatalf("acme's instance live %v, bob's claimed one live %v: want acme's retired and bob's kept", live(acme.InstanceID), live(bob.InstanceID))
	}

	// Another m1024 would need 2,048 MB with only the m256 retired: of
	// 1,536. Nothing is retired for it.
	if cands, enough := h.agent.roomCandidates("m1024", time.Now()); enough {
		t.Fatalf("room for m1024 by retiring %v on a 1,536 MB host holding a claimed m1024", instanceIDs(cands))
	}
}

func instanceIDs(ins []*instance) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.id
	}
	return out
}
