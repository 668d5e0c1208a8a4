package codestore

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// maxSymlinkTarget bounds a symlink entry's content (its target path).
const maxSymlinkTarget = 4096

// validate checks the zip in r (size bytes) against the rules in the package
// doc. Every rejection wraps ErrInvalid.
func validate(r io.ReaderAt, size int64, cfg Config) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalid)
	}
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return bad("not a zip file (%v)", err)
	}
	if len(zr.File) > cfg.MaxEntries {
		return bad("zip has %d entries, more than the limit of %d", len(zr.File), cfg.MaxEntries)
	}
	type entry struct {
		f    *zip.File
		mode fs.FileMode
		link string // cleaned target, relative to the root, for symlinks
	}
	entries := make(map[string]*entry, len(zr.File))
	var declared uint64
	for _, f := range zr.File {
		name, err := cleanName(f.Name)
		if err != nil {
			return bad("entry %q: %v", f.Name, err)
		}
		declared += f.UncompressedSize64
		if declared > uint64(cfg.MaxUnzippedBytes) {
			return fmt.Errorf("uncompressed size is over the %d byte limit: %w", cfg.MaxUnzippedBytes, ErrTooLarge)
		}
		if f.UncompressedSize64 > 1<<20 && (f.CompressedSize64 == 0 || f.UncompressedSize64/f.CompressedSize64 > uint64(cfg.MaxRatio)) {
			return bad("entry %q compresses %d bytes into %d, beyond the ratio limit of %d (zip bomb?)",
				f.Name, f.UncompressedSize64, f.CompressedSize64, cfg.MaxRatio)
		}
		if prev, dup := entries[name]; dup && !(prev.mode.IsDir() && f.Mode().IsDir()) {
			// Extraction would keep one and fail or surprise on the other.
			return bad("entry %q appears twice in the package", f.Name)
		}
		e := &entry{f: f, mode: f.Mode()}
		if t := e.mode.Type(); t != 0 && t != fs.ModeDir && t != fs.ModeSymlink {
			// Devices, pipes, sockets: nothing a function needs, and host
			// agents refuse to extract them.
			return bad("entry %q is a %v, not a file, directory or symlink", f.Name, t)
		}
		if e.mode&fs.ModeSymlink != 0 {
			target, err := readSmall(f, maxSymlinkTarget)
			if err != nil {
				return bad("symlink %q: %v", f.Name, err)
			}
			if target == "" || strings.HasPrefix(target, "/") || strings.Contains(target, "\\") {
				return bad("symlink %q points to %q: only relative targets inside the package are allowed", f.Name, target)
			}
			resolved := path.Join(path.Dir(name), target)
			if resolved == ".." || strings.HasPrefix(resolved, "../") {
				return bad("symlink %q points to %q, outside the package", f.Name, target)
			}
			e.link = resolved
		} else if !e.mode.IsDir() {
			// Decompress every regular file: archive/zip stops with an error
			// past the declared size (so the declared total above is a real
			// bound) and checks the CRC.
			if err := copyEntry(io.Discard, f, int64(f.UncompressedSize64)+1); err != nil {
				return bad("entry %q is corrupt: %v", f.Name, err)
			}
		}
		entries[name] = e
	}
	// bootstrap: an executable regular file, or a symlink chain inside the
	// package ending at one.
	name := "bootstrap"
	for hops := 0; ; hops++ {
		e, ok := entries[name]
		switch {
		case !ok && name == "bootstrap":
			return bad("no bootstrap at the root of the package (the provided runtime runs ./bootstrap)")
		case !ok:
			return bad("bootstrap is a symlink to %q, which is not in the package", name)
		case hops > 8:
			return bad("bootstrap: too many levels of symlinks")
		case e.link != "":
			name = e.link
			continue
		case e.mode.IsDir():
			return bad("bootstrap is a directory")
		case !e.mode.IsRegular():
			return bad("bootstrap is not a regular file (mode %v)", e.mode)
		case e.mode.Perm()&0o111 == 0:
			return bad("bootstrap is not executable (mode %v); set the execute bit, e.g. chmod +x bootstrap before zipping", e.mode.Perm())
		}
		return nil
	}
}

// cleanName checks a zip entry name and returns it cleaned, without a
// trailing slash.
func cleanName(n string) (string, error) {
	switch {
	case n == "":
		return "", errors.New("empty name")
	case strings.ContainsRune(n, 0):
		return "", errors.New("NUL in name")
	case strings.Contains(n, "\\"):
		return "", errors.New("backslash in name (zip paths use '/')")
	case strings.HasPrefix(n, "/"):
		return "", errors.New("absolute path")
	case len(n) >= 2 && n[1] == ':':
		return "", errors.New("drive-letter path")
	}
	for _, el := range strings.Split(n, "/") {
		if el == ".." {
			return "", errors.New("path traversal (\"..\"): zip slip")
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", errors.New("names the root")
	}
	return c, nil
}

// copyEntry decompresses at most limit bytes of f into w.
func copyEntry(w io.Writer, f *zip.File, limit int64) error {
	rc, err := f.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, io.LimitReader(rc, limit))
	return err
}

func readSmall(f *zip.File, limit int64) (string, error) {
	if f.UncompressedSize64 > uint64(limit) {
		return "", fmt.Errorf("target longer than %d bytes", limit)
	}
	var b strings.Builder
	if err := copyEntry(&b, f, limit); err != nil {
		return "", err
	}
	return b.String(), nil
}
