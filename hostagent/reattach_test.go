package hostagent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ember-run/ember/hostagent/initproto"
)

// TestReattachOnlyAsItWouldBoot: of four instances a clean stop left
// running, each with a record and an ember-init that answers, the start
// takes back the one it would boot the same way and destroys the one made
// from another image (an ember-init of before an upgrade), the one booted
// with another configuration (another containers' pids limit) and the one whose
// container holds another runtime spec, releasing their containers'
// network addresses; the warm pool then holds only the first.
func TestReattachOnlyAsItWouldBoot(t *testing.T) {
	state := t.TempDir()
	cfg := Config{StateDir: state, Pool: map[string]int{"m128": 1}}
	rt, nw := newFakeRuntime(), newFakeNetwork()
	leftRunning := func(id string, slot int, booted Config, containers ...containerRecord) {
		t.Helper()
		booted = booted.WithDefaults()
		in := &instance{id: id, class: "m128", memoryMB: 128, slot: slot, hostUID: booted.MappedRootUID + slot*booted.UIDRange,
			dir: filepath.Join(state, "instances", id)}
		if err := os.MkdirAll(in.sockDir(), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(record{Agent: "agent-test", ID: id, Class: in.class, MemoryMB: in.memoryMB, Slot: slot,
			HostUID: in.hostUID, CgroupPath: "/ember/" + id, Containers: containers,
			Settings: (&Agent{cfg: booted}).settingsDigest()})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in.dir, recordName), b, 0o644); err != nil {
			t.Fatal(err)
		}
		fi, err := startFakeInit(id, filepath.Join(in.sockDir(), initproto.SocketName))
		if err != nil {
			t.Fatal(err)
		}
		rt.live[id] = fi // stopped by Destroy
		rt.specs[id] = (&Agent{cfg: booted}).instanceSpec(in)
	}
	leftRunning("icurrent", 0, cfg)
	leftRunning("iold", 1, cfg, containerRecord{ID: "c-1", Key: "k", VersionKey: "acme/echo/1", MemoryMB: 128, NetID: "iold/c-1"})
	rt.images = map[string]string{"iold": "ember/instance:old"}
	other := cfg
	other.ContainerPidsLimit = 99
	leftRunning("iother", 2, other, containerRecord{ID: "c-2", Key: "k", VersionKey: "acme/echo/1", MemoryMB: 128, NetID: "iother/c-2"})

	// Its record is this start's, its container's runtime spec is not (an
	// upgrade of the sandbox: another seccomp profile, say).
	leftRunning("isandbox", 3, cfg)
	changed := rt.specs["isandbox"]
	changed.CPUShares++
	rt.specs["isandbox"] = changed

	h := startHarnessNet(t, cfg, rt, nw)
	if warm := h.warm("m128"); !slices.Equal(warm, []string{"icurrent"}) {
		t.Fatalf("warm instances after the start: %v, want the one it would boot the same way alone", warm)
	}
	rt.mu.Lock()
	destroyed := slices.Sorted(slices.Values(rt.destroyed))
	rt.mu.Unlock()
	if !slices.Equal(destroyed, []string{"iold", "iother", "isandbox"}) {
		t.Fatalf("destroyed at the start: %v, want the instances of another image, configuration and sandbox", destroyed)
	}
	nw.mu.Lock()
	detached := slices.Clone(nw.detached)
	nw.mu.Unlock()
	for _, id := range []string{"iold/c-1", "iother/c-2"} {
		if !slices.Contains(detached, id) {
			t.Fatalf("network addresses released: %v, want %s", detached, id)
		}
	}
}
