package statefs

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestAttachShareReleaseKeep: one resource attached under two instance
// directories is one file system; its quota holds; releasing both and
// removing the directories keeps the data; another tenant's resource of the
// same name is another file system.
func TestAttachShareReleaseKeep(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatal("statefs needs root (loop devices, mounts)")
	}
	root := t.TempDir()
	s, err := New(filepath.Join(root, "state"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	a, b := filepath.Join(root, "i1", "state"), filepath.Join(root, "i2", "state")
	for _, d := range []string{a, b} {
		if err := s.Prepare(d); err != nil {
			t.Fatal(err)
		}
		if err := s.Attach("acme", "data", 16, d); err != nil {
			t.Fatal(err)
		}
		if err := s.Attach("acme", "data", 16, d); err != nil { // twice: a no-op
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(a, "data", "x"), []byte("hello"), 0o666); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(b, "data", "x")); err != nil || string(got) != "hello" {
		t.Fatalf("the other instance reads %q, %v", got, err)
	}
	big := make([]byte, 32<<20)
	if err := os.WriteFile(filepath.Join(a, "data", "big"), big, 0o666); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("32 MiB into a 16 MB resource: %v, want ENOSPC", err)
	}
	_ = os.Remove(filepath.Join(a, "data", "big"))
	if err := s.Attach("globex", "data", 16, b); err == nil {
		t.Fatal("globex's data attached where acme's is")
	}
	c := filepath.Join(root, "i3", "state")
	if err := s.Prepare(c); err != nil {
		t.Fatal(err)
	}
	if err := s.Attach("globex", "data", 16, c); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c, "data", "x")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("globex sees acme's file: %v", err)
	}
	if n, err := testutil.GatherAndCount(registry(t, s), "ember_state_attached_instances"); err != nil || n != 2 {
		t.Fatalf("attachment series: %d, %v; want acme's and globex's", n, err)
	}
	for _, d := range []string{a, b, c} {
		if err := s.Release(d); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Dir(d)); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(root, "state", "acme", "data", "x")); err != nil || string(got) != "hello" {
		t.Fatalf("after release and removal the resource holds %q, %v", got, err)
	}
}

func registry(t *testing.T, s *Store) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(s); err != nil {
		t.Fatal(err)
	}
	return reg
}
