package codestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

var (
	// ErrInvalid is wrapped by every error about a rejected package or a
	// malformed digest.
	ErrInvalid = errors.New("invalid package")
	// ErrTooLarge is wrapped (together with ErrInvalid) when a package is
	// over a size limit.
	ErrTooLarge = fmt.Errorf("package too large: %w", ErrInvalid)
	// ErrNotFound is wrapped when no package has the asked digest.
	ErrNotFound = errors.New("package not found")
)

// Defaults of Config, Lambda's limits.
const (
	DefaultMaxZipBytes      int64 = 50 << 20
	DefaultMaxUnzippedBytes int64 = 250 << 20
	DefaultMaxEntries             = 20000
	DefaultMaxRatio               = 200
)

// Config configures a Store.
type Config struct {
	// Dir is the root directory; packages live in Dir/sha256. Required.
	Dir string
	// MaxZipBytes bounds the zip file itself. Default: 50 MiB.
	MaxZipBytes int64
	// MaxUnzippedBytes bounds the sum of the entries' uncompressed sizes.
	// Default: 250 MiB.
	MaxUnzippedBytes int64
	// MaxEntries bounds the number of entries. Default: 20000.
	MaxEntries int
	// MaxRatio bounds uncompressed/compressed size of any entry larger than
	// 1 MiB (a zip bomb guard on top of the total limit). Default: 200.
	MaxRatio int64
}

func (c Config) withDefaults() Config {
	if c.MaxZipBytes == 0 {
		c.MaxZipBytes = DefaultMaxZipBytes
	}
	if c.MaxUnzippedBytes == 0 {
		c.MaxUnzippedBytes = DefaultMaxUnzippedBytes
	}
	if c.MaxEntries == 0 {
		c.MaxEntries = DefaultMaxEntries
	}
	if c.MaxRatio == 0 {
		c.MaxRatio = DefaultMaxRatio
	}
	return c
}

// Validate checks c after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Dir == "":
		return errors.New("codestore: Dir is required")
	case c.MaxZipBytes < 0, c.MaxUnzippedBytes < 0, c.MaxEntries < 0, c.MaxRatio < 0:
		return errors.New("codestore: limits must not be negative")
	}
	return nil
}

// Package identifies a stored package.
type Package struct {
	// Digest is "sha256:<hex>" of the zip bytes.
	Digest string
	// Size is the zip's size in bytes.
	Size int64
}

// Store is a content-addressed package store. It is safe for concurrent use
// by many goroutines and processes on the same directory.
type Store struct {
	cfg Config
	dir string // Dir/sha256
}

// New opens (creating if needed) a store in cfg.Dir.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	dir := filepath.Join(cfg.Dir, "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("codestore: %w", err)
	}
	return &Store{cfg: cfg, dir: dir}, nil
}

// Limits returns the effective configuration.
func (s *Store) Limits() Config { return s.cfg }

// Put reads a zip from r, validates it and stores it. Putting an already
// stored package returns the same Package and changes nothing.
// Reading stops with ctx's error when ctx is done.
func (s *Store) Put(ctx context.Context, r io.Reader) (Package, error) {
	tmp, err := os.CreateTemp(s.dir, ".put-*")
	if err != nil {
		return Package{}, fmt.Errorf("codestore: %w", err)
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmpName)
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(ctxReader{ctx, r}, s.cfg.MaxZipBytes+1))
	if err != nil {
		return Package{}, fmt.Errorf("codestore: reading package: %w", err)
	}
	if n > s.cfg.MaxZipBytes {
		return Package{}, fmt.Errorf("package is over the %d byte limit: %w", s.cfg.MaxZipBytes, ErrTooLarge)
	}
	if err := validate(tmp, n, s.cfg); err != nil {
		return Package{}, err
	}
	pkg := Package{Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: n}
	final := filepath.Join(s.dir, pkg.Digest[len("sha256:"):]+".zip")
	if _, err := os.Stat(final); err == nil {
		return pkg, nil // already stored: content-addressed, identical bytes
	}
	if err := tmp.Chmod(0o444); err != nil {
		return Package{}, fmt.Errorf("codestore: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return Package{}, fmt.Errorf("codestore: fsync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return Package{}, fmt.Errorf("codestore: %w", err)
	}
	if err := os.Rename(tmpName, final); err != nil {
		return Package{}, fmt.Errorf("codestore: %w", err)
	}
	committed = true
	if d, err := os.Open(s.dir); err == nil {
		_ = d.Sync() // make the rename durable; best effort on filesystems without dir fsync
		_ = d.Close()
	}
	return pkg, nil
}

// ParseDigest checks that digest is "sha256:" followed by 64 lowercase hex
// digits and returns the hex part.
func ParseDigest(digest string) (string, error) {
	hexPart, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexPart) != 64 {
		return "", fmt.Errorf("digest %q: want sha256:<64 hex digits>: %w", digest, ErrInvalid)
	}
	for _, c := range hexPart {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("digest %q: want sha256:<64 lowercase hex digits>: %w", digest, ErrInvalid)
		}
	}
	return hexPart, nil
}

// Path returns the file holding digest's package; it need not exist.
func (s *Store) Path(digest string) (string, error) {
	hexPart, err := ParseDigest(digest)
	if err != nil {
		return "", err
	}
	return filepath.Join(s.dir, hexPart+".zip"), nil
}

// Has reports whether digest is stored.
func (s *Store) Has(digest string) (bool, error) {
	p, err := s.Path(digest)
	if err != nil {
		return false, err
	}
	_, err = os.Stat(p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("codestore: %w", err)
}

// Open returns digest's package and its size. The caller closes it.
func (s *Store) Open(digest string) (io.ReadCloser, int64, error) {
	p, err := s.Path(digest)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("package %s: %w", digest, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("codestore: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, fmt.Errorf("codestore: %w", err)
	}
	return f, st.Size(), nil
}

// Digests lists the stored packages' digests.
func (s *Store) Digests() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("codestore: %w", err)
	}
	var out []string
	for _, e := range ents {
		if h, ok := strings.CutSuffix(e.Name(), ".zip"); ok && e.Type().IsRegular() {
			if _, err := ParseDigest("sha256:" + h); err == nil {
				out = append(out, "sha256:"+h)
			}
		}
	}
	return out, nil
}

// Delete removes digest's package. Deleting a missing package succeeds.
func (s *Store) Delete(digest string) error {
	p, err := s.Path(digest)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("codestore: %w", err)
	}
	return nil
}

// ctxReader stops reading once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
