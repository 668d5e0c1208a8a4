package codefetch

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
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
	trees := NewTrees(filepath.Join(root, "codes"), src)
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
