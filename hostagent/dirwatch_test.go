package hostagent

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
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

// TestDirWatchWithoutInotify: the zero dirWatch (inotify unavailable) waits
// its bound, or until its context ends.
func TestDirWatchWithoutInotify(t *testing.T) {
	var w dirWatch
	if err := w.wait(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("wait for the bound: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.wait(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("wait under a cancelled context = %v", err)
	}
	w.close()
}

// TestDialInitBootingSocket: a booting instance's socket appears after the
// agent began dialling, renamed into place as ember-init does; the agent
// connects and reads its Hello.
func TestDialInitBootingSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, initproto.SocketName)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type dialled struct {
		c   *initClient
		err error
	}
	done := make(chan dialled, 1)
	go func() {
		c, err := dialInit(ctx, path, "inst-1", true, initEvents{})
		done <- dialled{c, err}
	}()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path + ".new", Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	uc, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := initproto.NewConn(uc).Write(initproto.TypeHello, 0, initproto.Hello{InstanceID: "inst-1"}, nil); err != nil {
		t.Fatal(err)
	}
	d := <-done
	if d.err != nil {
		t.Fatalf("dialInit: %v", d.err)
	}
	if d.c.hello.InstanceID != "inst-1" {
		t.Fatalf("hello %+v", d.c.hello)
	}
	d.c.close()
}
