package codefetch

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits bound an extraction.
type Limits struct {
	// MaxBytes bounds the total uncompressed size, counted from the bytes
	// actually written (headers are not trusted). Default: 256 MiB (Lambda's
	// unzipped limit is 250 MB).
	MaxBytes int64
	// MaxEntries bounds the number of entries. Default: 20000.
	MaxEntries int
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 256 << 20
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = 20000
	}
	return l
}

// Extract unpacks the zip archive at zipPath into destDir, which must not
// exist yet: the tree is built in a temporary sibling and renamed into place,
// so destDir is either complete or absent. Entries are refused (ErrInvalid)
// if their name is absolute or leaves the tree, if they are duplicates, or if
// they are symbolic links whose target is absolute or resolves outside the
// tree; special files are refused too. Regular files keep their executable
// bits and are made world-readable (0644 or 0755); directories are 0755.
func Extract(zipPath, destDir string, lim Limits) error {
	lim = lim.withDefaults()
	zr, err := zip.OpenReader(zipPath)
	if err != nil {
		return fmt.Errorf("codefetch: open %s: %v: %w", zipPath, err, ErrInvalid)
	}
	defer zr.Close()
	if len(zr.File) > lim.MaxEntries {
		return fmt.Errorf("codefetch: %d entries, at most %d: %w", len(zr.File), lim.MaxEntries, ErrTooLarge)
	}
	if _, err := os.Lstat(destDir); err == nil {
		return fmt.Errorf("codefetch: extract into %s: %w", destDir, fs.ErrExist)
	}
	parent := filepath.Dir(destDir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, ".extract-*")
	if err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	defer root.Close()
	budget := lim.MaxBytes
	for _, f := range zr.File {
		if err := extractOne(root, f, &budget); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, destDir); err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	ok = true
	return nil
}

// entryName validates a zip entry name and returns it as a local path.
func entryName(name string) (string, error) {
	if name == "" || strings.ContainsRune(name, 0) || strings.Contains(name, `\`) {
		return "", fmt.Errorf("codefetch: entry %q: bad name: %w", name, ErrInvalid)
	}
	if path.IsAbs(name) {
		return "", fmt.Errorf("codefetch: entry %q: absolute path: %w", name, ErrInvalid)
	}
	for _, part := range strings.Split(strings.TrimSuffix(name, "/"), "/") {
		if part == ".." {
			return "", fmt.Errorf("codefetch: entry %q: leaves the tree: %w", name, ErrInvalid)
		}
	}
	clean := path.Clean(name)
	if !filepath.IsLocal(clean) {
		return "", fmt.Errorf("codefetch: entry %q: not a local path: %w", name, ErrInvalid)
	}
	return clean, nil
}

func extractOne(root *os.Root, f *zip.File, budget *int64) error {
	name, err := entryName(f.Name)
	if err != nil {
		return err
	}
	mode := f.Mode()
	switch {
	case mode.IsDir():
		if name == "." {
			return nil
		}
		if err := root.MkdirAll(name, 0o755); err != nil {
			return fmt.Errorf("codefetch: entry %q: %w", f.Name, err)
		}
		return nil
	case mode&fs.ModeSymlink != 0:
		target, err := readSmall(f, 4096)
		if err != nil {
			return err
		}
		if target == "" || path.IsAbs(target) || strings.ContainsRune(target, 0) {
			return fmt.Errorf("codefetch: symlink %q -> %q: absolute or empty target: %w", f.Name, target, ErrInvalid)
		}
		if !filepath.IsLocal(path.Join(path.Dir(name), target)) {
			return fmt.Errorf("codefetch: symlink %q -> %q: points outside the tree: %w", f.Name, target, ErrInvalid)
		}
		if err := mkParent(root, name); err != nil {
			return err
		}
		if err := root.Symlink(target, name); err != nil {
			return fmt.Errorf("codefetch: symlink %q: %w", f.Name, err)
		}
		return nil
	case mode.IsRegular():
		perm := fs.FileMode(0o644)
		if mode&0o111 != 0 {
			perm = 0o755
		}
		if err := mkParent(root, name); err != nil {
			return err
		}
		out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err != nil {
			return fmt.Errorf("codefetch: entry %q: %w", f.Name, err)
		}
		rc, err := f.Open()
		if err != nil {
			out.Close()
			return fmt.Errorf("codefetch: entry %q: %v: %w", f.Name, err, ErrInvalid)
		}
		n, err := io.Copy(out, io.LimitReader(rc, *budget+1))
		rc.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			if errors.Is(err, zip.ErrChecksum) || errors.Is(err, zip.ErrFormat) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("codefetch: entry %q: %v: %w", f.Name, err, ErrInvalid)
			}
			return fmt.Errorf("codefetch: entry %q: %w", f.Name, err)
		}
		if n > *budget {
			return fmt.Errorf("codefetch: extracted size over the limit: %w", ErrTooLarge)
		}
		*budget -= n
		// The umask may have cleared bits: set the mode explicitly.
		if err := root.Chmod(name, perm); err != nil {
			return fmt.Errorf("codefetch: entry %q: %w", f.Name, err)
		}
		return nil
	default:
		return fmt.Errorf("codefetch: entry %q: unsupported type %v: %w", f.Name, mode.Type(), ErrInvalid)
	}
}

func mkParent(root *os.Root, name string) error {
	if d := path.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("codefetch: entry %q: %w", name, err)
		}
	}
	return nil
}

func readSmall(f *zip.File, max int64) (string, error) {
	rc, err := f.Open()
	if err != nil {
		return "", fmt.Errorf("codefetch: entry %q: %v: %w", f.Name, err, ErrInvalid)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return "", fmt.Errorf("codefetch: entry %q: %v: %w", f.Name, err, ErrInvalid)
	}
	if int64(len(b)) > max {
		return "", fmt.Errorf("codefetch: symlink %q: target too long: %w", f.Name, ErrInvalid)
	}
	return string(b), nil
}
