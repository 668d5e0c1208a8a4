package hostagent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestDirWatchWakesOnRename: a wait whose bound is far away returns when a
// socket is renamed into the directory (as ember-init does once it listens),
// and a wait whose context ends returns its error.
func TestDirWatchWakesOnRename(t *testing.T) {
	dir := t.TempDir()
	w, err := watchDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "s.new"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := w.wait(ctx, time.Hour); err != nil { // the bind
		t.Fatalf("wait after bind: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- w.wait(ctx, time.Hour) }()
	if err := os.Rename(filepath.Join(dir, "s.new"), filepath.Join(dir, "s")); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("wait for the rename: %v", err)
	}
	c, err := net.Dial("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatalf("dial the renamed socket: %v", err)
	}
	c.Close()

	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := w.wait(cctx, time.Hour); err != context.Canceled {
		t.Fatalf("wait under a cancelled context = %v", err)
	}
}
