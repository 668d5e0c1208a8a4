package bpf

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ember-run/ember/hostagent/cgroup"
)

// TestSlotReusedZeroed: once every slot has been used, a new cgroup gets
// the slot released longest ago, with its counters zeroed; with none free,
// Attach fails and registers nothing.
func TestSlotReusedZeroed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root: loads eBPF programs and creates cgroups")
	}
	a, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	parent := fmt.Sprintf("/ember-bpfslots-%d", os.Getpid())
	if err := os.Mkdir(filepath.Join(cgroup.Root, cgroup.Unified, parent), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(filepath.Join(cgroup.Root, cgroup.Unified, parent))
	attach := func(name string) (*Handle, func()) {
		t.Helper()
		dir := filepath.Join(cgroup.Root, cgroup.Unified, parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		h, err := a.Attach(dir, inode(fi))
		if err != nil {
			os.Remove(dir)
			t.Fatal(err)
		}
		return h, func() { h.Close(); os.Remove(dir) }
	}
	first, closeFirst := attach("first")
	second, closeSecond := attach("second")
	defer closeSecond()
	// Counts as a program would have made them.
	if _, err := a.mem.WriteAt([]byte{7, 0, 0, 0, 0, 0, 0, 0, 9}, int64(first.slot)*slotSize); err != nil {
		t.Fatal(err)
	}
	if c, err := first.Read(); err != nil || c.RxBytes != 7 || c.TxBytes != 9 {
		t.Fatalf("first: %+v, %v; want rx 7 tx 9", c, err)
	}
	slot := first.slot
	closeFirst()
	a.mu.Lock()
	a.next = a.slots // as if every slot had been used
	a.mu.Unlock()

	third, closeThird := attach("third")
	if third.slot != slot {
		t.Fatalf("third got slot %d, want the released %d", third.slot, slot)
	}
	if c, err := third.Read(); err != nil || c != (Counters{}) {
		t.Fatalf("a reused slot reads %+v, %v; want zero", c, err)
	}
	dir := filepath.Join(cgroup.Root, cgroup.Unified, parent, "fourth")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(dir)
	fi, _ := os.Stat(dir)
	if _, err := a.Attach(dir, inode(fi)); err == nil {
		t.Fatal("Attach with every slot taken succeeded")
	}
	if n, err := a.Entries(); err != nil || n != 2 {
		t.Fatalf("entries %d (%v) after a refused Attach, want 2", n, err)
	}
	closeThird()
	if n, err := a.Entries(); err != nil || n != 1 {
		t.Fatalf("entries %d (%v), want 1", n, err)
	}
	_ = second
}

// inode is a cgroup2 directory's inode: its cgroup id.
func inode(fi os.FileInfo) uint64 { return fi.Sys().(*syscall.Stat_t).Ino }
