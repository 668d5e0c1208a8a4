package codefetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Trees keeps each package extracted once per host, content-addressed:
// <dir>/<hex> is the package's files, made by Extract from the archive
// fetched into <dir>/<hex>.zip (removed once the tree is there). An
// instance gets a copy whose files are hard links into that tree: making
// one costs a system call per entry instead of an unzip of the archive
// (about 100 ms for a 12 MB Go bootstrap on these machines). The tree's
// files are never written after extraction: instances see their copy
// read-only, and every file belongs to the host's root. It is safe for
// concurrent use.
//
// The trees use at most a budget of bytes: when a new tree passes it, the
// least recently linked others are removed (a tree's modification time is
// its last link, so the order survives a restart). Instances keep their
// copies: hard links outlive the tree they were made from.
type Trees struct {
	dir string
	src Source
	max int64 // bytes the trees may use; 0: no limit

	mu    sync.Mutex
	busy  map[string]*sync.RWMutex // per digest: made and removed under its write lock, linked under its read lock
	sizes map[string]int64         // bytes of the trees measured so far
}

// NewTrees returns the trees under dir, fetching packages from src and
// keeping at most maxBytes of them (0: no limit). What an earlier agent
// left half made there (temporary files and directories) is removed.
func NewTrees(dir string, src Source, maxBytes int64) *Trees {
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if name := e.Name(); len(name) > 0 && name[0] == '.' {
				_ = os.RemoveAll(filepath.Join(dir, name))
			}
		}
	}
	return &Trees{dir: dir, src: src, max: maxBytes, busy: map[string]*sync.RWMutex{}, sizes: map[string]int64{}}
}

// Link makes dest (which must not exist) a copy of digest's tree, fetching
// and extracting the package first if this host has not yet. Errors of
// the package itself wrap ErrInvalid, ErrTooLarge or ErrDigestMismatch.
func (t *Trees) Link(ctx context.Context, digest, dest string) error {
	h, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	tree, m := filepath.Join(t.dir, h), t.lock(h)
	m.RLock()
	if _, err := os.Stat(tree); err == nil {
		err := use(tree, dest)
		m.RUnlock()
		return err
	}
	m.RUnlock()
	made, err := t.make(ctx, digest, tree, dest, m)
	if made {
		t.prune(h)
	}
	return err
}

// use marks tree as used now (its modification time, for pruning) and
// copies it to dest.
func use(tree, dest string) error {
	now := time.Now()
	_ = os.Chtimes(tree, now, now)
	return linkTree(tree, dest)
}

// lock is digest hex h's lock.
func (t *Trees) lock(h string) *sync.RWMutex {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.busy[h]
	if m == nil {
		m = &sync.RWMutex{}
		t.busy[h] = m
	}
	return m
}

// make fetches and extracts digest's package into tree unless it is
// there, then copies it to dest, under the tree's write lock (no prune
// takes it before dest has its copy); it reports whether it made the tree.
func (t *Trees) make(ctx context.Context, digest, tree, dest string, m *sync.RWMutex) (bool, error) {
	m.Lock()
	defer m.Unlock()
	if _, err := os.Stat(tree); err == nil { // made while this one waited
		return false, use(tree, dest)
	}
	zip := tree + ".zip"
	if err := FetchFile(ctx, t.src, digest, zip); err != nil {
		return false, err
	}
	if err := Extract(zip, tree, Limits{}); err != nil {
		if errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) {
			_ = os.Remove(zip) // the package's own fault: nothing to keep
		}
		return false, err
	}
	_ = os.Remove(zip) // the tree holds what it held
	h := filepath.Base(tree)
	n := treeSize(tree)
	t.mu.Lock()
	t.sizes[h] = n
	t.mu.Unlock()
	return true, use(tree, dest)
}

// prune removes the least recently linked trees other than keep's while
// the trees use more than their budget. A tree being linked or made is
// passed over.
func (t *Trees) prune(keep string) {
	if t.max <= 0 {
		return
	}
	ents, err := os.ReadDir(t.dir)
	if err != nil {
		return
	}
	type tree struct {
		h    string
		used time.Time
		size int64
	}
	var all []tree
	var total int64
	for _, e := range ents {
		h := e.Name()
		if !e.IsDir() || len(h) == 0 || h[0] == '.' {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		size := t.size(h)
		all = append(all, tree{h, info.ModTime(), size})
		total += size
	}
	slices.SortFunc(all, func(a, b tree) int { return a.used.Compare(b.used) })
	for _, tr := range all {
		if total <= t.max {
			return
		}
		if tr.h == keep {
			continue
		}
		m := t.lock(tr.h)
		if !m.TryLock() {
			continue
		}
		// Renamed away first, then removed: a tree is whole or absent,
		// whatever stops the removal (what is left is swept at start).
		gone, err := os.MkdirTemp(t.dir, ".rm-*")
		if err == nil {
			err = os.Rename(filepath.Join(t.dir, tr.h), filepath.Join(gone, tr.h))
		}
		if err == nil {
			total -= tr.size
			t.mu.Lock()
			delete(t.sizes, tr.h)
			t.mu.Unlock()
		}
		m.Unlock()
		if gone != "" {
			_ = os.RemoveAll(gone)
		}
	}
}

// size is the disk space of tree h, measured once (under its read lock:
// not while it is made or removed).
func (t *Trees) size(h string) int64 {
	t.mu.Lock()
	n, ok := t.sizes[h]
	t.mu.Unlock()
	if ok {
		return n
	}
	m := t.lock(h)
	m.RLock()
	defer m.RUnlock()
	n = treeSize(filepath.Join(t.dir, h))
	t.mu.Lock()
	t.sizes[h] = n
	t.mu.Unlock()
	return n
}

// treeSize is the disk space of the files under dir: blocks, not lengths
// (what the budget is about).
func treeSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	return n
}

// linkTree copies the tree at src to dest (built in a temporary sibling and
// renamed: dest is complete or absent) with hard links for files, falling
// back to copies across file systems.
func linkTree(src, dest string) error {
	parent := filepath.Dir(dest)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, ".link-*")
	if err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		to := filepath.Join(tmp, rel)
		switch {
		case d.IsDir():
			if err := os.Mkdir(to, 0o755); err != nil {
				return err
			}
			return os.Chmod(to, 0o755) // whatever the umask
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.Type().IsRegular():
			if err := os.Link(p, to); errors.Is(err, unix.EXDEV) {
				return copyFile(p, to)
			} else {
				return err
			}
		}
		return fmt.Errorf("%s: not a file, directory or symbolic link", p)
	})
	if err == nil {
		// The temporary directory's 0700 would hide the code from the
		// function's uid.
		err = os.Chmod(tmp, 0o755)
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("codefetch: copy %s to %s: %w", src, dest, err)
	}
	return nil
}

// copyFile copies the regular file from to to, with its mode.
func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, st.Mode().Perm())
	if err != nil {
		return err
	}
	if err := out.Chmod(st.Mode().Perm()); err != nil { // whatever the umask
		out.Close()
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
