package hostagent

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

// bootedInstance returns the harness's one instance of class and its fake
// ember-init.
func (h *harness) bootedInstance(class string) (*instance, *fakeInit) {
	h.t.Helper()
	ids := h.warm(class)
	if len(ids) != 1 {
		h.t.Fatalf("warm %s instances: %v, want one", class, ids)
	}
	h.agent.mu.Lock()
	in := h.agent.insts[ids[0]]
	h.agent.mu.Unlock()
	h.rt.mu.Lock()
	fi := h.rt.live[ids[0]]
	h.rt.mu.Unlock()
	if in == nil || fi == nil {
		h.t.Fatalf("instance %s: agent %v, runtime %v", ids[0], in, fi)
	}
	return in, fi
}

func spareID(a *Agent, in *instance) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if in.spare == nil {
		return ""
	}
	return in.spare.id
}

// A booting instance's first network namespace is made and connected by
// the agent while the instance starts; ember-init adopts it, and it is the
// instance's spare: the only attachment, nothing made by ember-init.
func TestEarlySpareAdopted(t *testing.T) {
	rt, nw := newFakeRuntime(), newFakeNetwork()
	h := startHarnessNet(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2}, rt, nw)
	in, fi := h.bootedInstance("m128")
	id := spareID(h.agent, in)
	if id == "" {
		t.Fatal("no spare after the boot")
	}
	if got, want := fi.netnsEvents(), []string{"netns adopt " + id}; !slices.Equal(got, want) {
		t.Fatalf("ember-init's network namespace requests: %v, want %v", got, want)
	}
	if got, want := nw.liveIDs(), []string{attachmentID(in.id, id)}; !slices.Equal(got, want) {
		t.Fatalf("attachments %v, want %v", got, want)
	}
}

// When ember-init refuses the namespace the agent made, it makes one as it
// did before; the refused one is detached and released in ember-init too.
func TestEarlySpareRefusedFallsBack(t *testing.T) {
	rt, nw := newFakeRuntime(), newFakeNetwork()
	rt.refuseAdopt = true
	h := startHarnessNet(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2}, rt, nw)
	in, fi := h.bootedInstance("m128")
	id := spareID(h.agent, in)
	ev := fi.netnsEvents()
	if len(ev) != 3 || !strings.HasPrefix(ev[0], "netns refuse ") || ev[1] != "netns make "+id ||
		ev[2] != "netns release "+strings.TrimPrefix(ev[0], "netns refuse ") {
		t.Fatalf("ember-init's network namespace requests: %v; want refuse X, make %s, release X", ev, id)
	}
	if got, want := nw.liveIDs(), []string{attachmentID(in.id, id)}; !slices.Equal(got, want) {
		t.Fatalf("attachments %v, want only the spare's %v", got, want)
	}
}

// A boot whose instance fails to start drops the namespace it was making:
// nothing of it stays attached.
func TestEarlySpareDroppedWhenStartFails(t *testing.T) {
	rt, nw := newFakeRuntime(), newFakeNetwork()
	h := startHarnessNet(t, Config{Pool: map[string]int{"m128": 1, "m512": 0}, MaxInstances: 3}, rt, nw)
	in, _ := h.bootedInstance("m128")
	kept := attachmentID(in.id, spareID(h.agent, in))
	rt.mu.Lock()
	rt.startFails = errors.New("runc start: refused")
	rt.mu.Unlock()
	if err := h.store.RequestInstance(t.Context(), "m512", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "a failed boot's namespace attached, then dropped", func() bool {
		nw.mu.Lock()
		defer nw.mu.Unlock()
		return len(nw.attached) >= 2 && len(nw.live) == 1
	})
	if got := nw.liveIDs(); !slices.Equal(got, []string{kept}) {
		t.Fatalf("attachments %v, want only the m128 spare's %s", got, kept)
	}
}
