package codefetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

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
type Trees struct {
	dir string
	src Source

	mu   sync.Mutex
	busy map[string]*sync.Mutex // per digest: one fetch and extraction at a time
}

// NewTrees returns the trees under dir, fetching packages from src. What
// an earlier agent left half made there (temporary files and directories)
// is removed.
func NewTrees(dir string, src Source) *Trees {
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if name := e.Name(); len(name) > 0 && name[0] == '.' {
				_ = os.RemoveAll(filepath.Join(dir, name))
			}
		}
	}
	return &Trees{dir: dir, src: src, busy: map[string]*sync.Mutex{}}
}

// Link makes dest (which must not exist) a copy of digest's tree, fetching
// and extracting the package first if this host has not yet. Errors of
// the package itself wrap ErrInvalid, ErrTooLarge or ErrDigestMismatch.
func (t *Trees) Link(ctx context.Context, digest, dest string) error {
	tree, err := t.tree(ctx, digest)
	if err != nil {
		return err
	}
	return linkTree(tree, dest)
}

// tree returns the directory of digest's extracted package, making it
// once.
func (t *Trees) tree(ctx context.Context, digest string) (string, error) {
	h, err := ParseDigest(digest)
	if err != nil {
		return "", err
	}
	tree := filepath.Join(t.dir, h)
	if _, err := os.Stat(tree); err == nil {
		return tree, nil
	}
	t.mu.Lock()
	m := t.busy[h]
	if m == nil {
		m = &sync.Mutex{}
		t.busy[h] = m
	}
	t.mu.Unlock()
	m.Lock()
	defer m.Unlock()
	if _, err := os.Stat(tree); err == nil { // made while this one waited
		return tree, nil
	}
	zip := tree + ".zip"
	if err := FetchFile(ctx, t.src, digest, zip); err != nil {
		return "", err
	}
	if err := Extract(zip, tree, Limits{}); err != nil {
		if errors.Is(err, ErrInvalid) || errors.Is(err, ErrTooLarge) {
			_ = os.Remove(zip) // the package's own fault: nothing to keep
		}
		return "", err
	}
	_ = os.Remove(zip) // the tree holds what it held
	return tree, nil
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
