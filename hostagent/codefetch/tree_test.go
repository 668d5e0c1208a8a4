package codefetch

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// counting is a real Source that counts its fetches.
type counting struct {
	Source
	n atomic.Int32
}

func (c *counting) Fetch(ctx context.Context, digest string, w io.Writer) error {
	c.n.Add(1)
	return c.Source.Fetch(ctx, digest, w)
}

// store writes pkg into a Dir store under root and returns its digest.
func store(t *testing.T, root string, pkg []byte) string {
	t.Helper()
	d := digestOf(pkg)
	if err := os.MkdirAll(filepath.Join(root, "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "sha256", d[7:]+".zip"), pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestTreesLinkOnce: eight instances asking at once for one package get
// complete copies that share the host's one extracted tree (the same
// inodes, an executable bootstrap, a directory and a symbolic link); the
// package is fetched once, and its archive is gone once the tree is made.
// An invalid package is the package's error and leaves no tree.
func TestTreesLinkOnce(t *testing.T) {
	root := t.TempDir()
	d := store(t, filepath.Join(root, "store"), makeZip(t, []entry{
		{name: "bootstrap", body: "#!/bin/sh\n", mode: 0o755},
		{name: "lib/data.txt", body: "data"},
		{name: "current", body: "lib", mode: fs.ModeSymlink | 0o777},
	}))
	src := &counting{Source: Dir{Root: filepath.Join(root, "store")}}
	trees := NewTrees(filepath.Join(root, "codes"), src, 0)
	var wg sync.WaitGroup
	dests := make([]string, 8)
	for i := range dests {
		dests[i] = filepath.Join(root, "instances", string(rune('a'+i)), "code", d[7:])
		wg.Go(func() {
			if err := trees.Link(context.Background(), d, dests[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := src.n.Load(); n != 1 {
		t.Fatalf("%d fetches for one package", n)
	}
	tree := filepath.Join(root, "codes", d[7:])
	want, err := os.Stat(filepath.Join(tree, "bootstrap"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dest := range dests {
		got, err := os.Stat(filepath.Join(dest, "bootstrap"))
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(got, want) || got.Mode().Perm() != 0o755 {
			t.Fatalf("%s/bootstrap: not the tree's file (%v) or mode %v", dest, !os.SameFile(got, want), got.Mode())
		}
		if b, err := os.ReadFile(filepath.Join(dest, "current", "data.txt")); err != nil || string(b) != "data" {
			t.Fatalf("%s/current/data.txt: %q, %v", dest, b, err)
		}
		if st, err := os.Stat(dest); err != nil || st.Mode().Perm() != 0o755 {
			t.Fatalf("%s: %v, %v", dest, st, err)
		}
	}
	if _, err := os.Stat(tree + ".zip"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the archive is still there: %v", err)
	}
	// Linking once more reuses the tree without a fetch.
	if err := trees.Link(context.Background(), d, filepath.Join(root, "again")); err != nil || src.n.Load() != 1 {
		t.Fatalf("again: %v, %d fetches", err, src.n.Load())
	}

	bad := store(t, filepath.Join(root, "store"), []byte("not a zip"))
	if err := trees.Link(context.Background(), bad, filepath.Join(root, "bad")); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an invalid package: %v, want ErrInvalid", err)
	}
	if _, err := os.Stat(filepath.Join(root, "codes", bad[7:])); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an invalid package left a tree: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "bad")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an invalid package left a copy: %v", err)
	}
}

// TestTreesPrune: with a budget of about two packages, making a third
// removes the least recently linked other one, never one being linked nor
// the one just made (even past the budget); an instance's copy of a
// removed tree keeps its files. Links of many packages at once under a
// budget of one all get whole copies.
func TestTreesPrune(t *testing.T) {
	root := t.TempDir()
	var names []string
	pkgs := map[string]string{}
	for i := range 6 {
		name := string(rune('a' + i))
		body := make([]byte, 256<<10)
		if _, err := rand.Read(body); err != nil { // incompressible: 256 KiB on disk
			t.Fatal(err)
		}
		names = append(names, name)
		pkgs[name] = store(t, filepath.Join(root, "store"), makeZip(t, []entry{{name: "bootstrap", body: string(body), mode: 0o755}}))
	}
	src := Dir{Root: filepath.Join(root, "store")}
	codes := filepath.Join(root, "codes")
	trees := NewTrees(codes, src, 600<<10)
	link := func(trees *Trees, name, dest string) {
		t.Helper()
		if err := trees.Link(context.Background(), pkgs[name], filepath.Join(root, "instances", dest)); err != nil {
			t.Fatal(err)
		}
	}
	has := func(codes, name string) bool {
		_, err := os.Stat(filepath.Join(codes, pkgs[name][7:]))
		return err == nil
	}
	used := func(name string, ago time.Duration) { // as if last linked ago
		t.Helper()
		when := time.Now().Add(-ago)
		if err := os.Chtimes(filepath.Join(codes, pkgs[name][7:]), when, when); err != nil {
			t.Fatal(err)
		}
	}
	link(trees, "a", "1")
	link(trees, "b", "2")
	used("a", time.Minute)
	used("b", 2*time.Minute)
	link(trees, "c", "3")
	if !has(codes, "a") || has(codes, "b") || !has(codes, "c") {
		t.Fatalf("after c: a %v, b %v, c %v; want b removed", has(codes, "a"), has(codes, "b"), has(codes, "c"))
	}
	if st, err := os.Stat(filepath.Join(root, "instances", "2", "bootstrap")); err != nil || st.Size() != 256<<10 {
		t.Fatalf("the copy of a removed tree: %v, %v", st, err)
	}
	// b again while c, now the least recently used, is being linked: c
	// is passed over and a goes.
	used("a", time.Minute)
	used("c", 2*time.Minute)
	h := pkgs["c"][7:]
	trees.lock(h).RLock()
	link(trees, "b", "4")
	trees.lock(h).RUnlock()
	if has(codes, "a") || !has(codes, "b") || !has(codes, "c") {
		t.Fatalf("after b again: a %v, b %v, c %v; want a removed", has(codes, "a"), has(codes, "b"), has(codes, "c"))
	}

	// A budget smaller than one package keeps the one just made.
	small := filepath.Join(root, "small")
	one := NewTrees(small, src, 100<<10)
	link(one, "a", "5")
	link(one, "b", "6")
	if has(small, "a") || !has(small, "b") {
		t.Fatalf("budget under one package: a %v, b %v; want only b", has(small, "a"), has(small, "b"))
	}
	// Many packages at once, each made, linked and removed again and
	// again: every copy is whole.
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			dest := filepath.Join(root, "instances", "many", strconv.Itoa(i))
			if err := one.Link(context.Background(), pkgs[names[i%len(names)]], dest); err != nil {
				t.Error(err)
				return
			}
			if st, err := os.Stat(filepath.Join(dest, "bootstrap")); err != nil || st.Size() != 256<<10 {
				t.Errorf("copy %d: %v, %v", i, st, err)
			}
		})
	}
	wg.Wait()
}
