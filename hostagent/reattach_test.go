package hostagent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ember-run/ember/hostagent/initproto"
)

// TestReattachOnlyItsOwnImage: of two instances a clean stop left running,
// each with a record and an ember-init that answers, the start takes back
// the one made from the image it runs and destroys the one made from
// another (an ember-init of before an upgrade), releasing its containers'
// network addresses; the warm pool then holds only the first.
func TestReattachOnlyItsOwnImage(t *testing.T) {
	d := Config{}.WithDefaults()
	state := t.TempDir()
	rt, nw := newFakeRuntime(), newFakeNetwork()
	leftRunning := func(id string, slot int, containers ...containerRecord) {
		t.Helper()
		dir := filepath.Join(state, "instances", id)
		if err := os.MkdirAll(filepath.Join(dir, "sock"), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(record{Agent: "agent-test", ID: id, Class: "m128", MemoryMB: 128, Slot: slot,
			HostUID: d.MappedRootUID + slot*d.UIDRange, CgroupPath: "/ember/" + id, Containers: containers})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, recordName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := startFakeInit(id, filepath.Join(dir, "sock", initproto.SocketName))
		if err != nil {
			t.Fatal(err)
		}
		rt.live[id] = fi // stopped by Destroy
	}
	leftRunning("icurrent", 0)
	const netID = "iold/c-1"
	leftRunning("iold", 1, containerRecord{ID: "c-1", Key: "k", VersionKey: "acme/echo/1", MemoryMB: 128, NetID: netID})
	rt.images = map[string]string{"iold": "ember/instance:old"}

	h := startHarnessNet(t, Config{StateDir: state, Pool: map[string]int{"m128": 1}}, rt, nw)
	if warm := h.warm("m128"); !slices.Equal(warm, []string{"icurrent"}) {
		t.Fatalf("warm instances after the start: %v, want the one of this start's image alone", warm)
	}
	rt.mu.Lock()
	destroyed := slices.Clone(rt.destroyed)
	rt.mu.Unlock()
	if !slices.Equal(destroyed, []string{"iold"}) {
		t.Fatalf("destroyed at the start: %v, want the instance of another image", destroyed)
	}
	nw.mu.Lock()
	detached := slices.Clone(nw.detached)
	nw.mu.Unlock()
	if !slices.Contains(detached, netID) {
		t.Fatalf("network addresses released: %v, want its container's %s", detached, netID)
	}
}
