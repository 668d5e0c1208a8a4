package codefetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
)

// Errors, to test with errors.Is.
var (
	// ErrNotFound: the source has no package with that digest.
	ErrNotFound = errors.New("codefetch: package not found")
	// ErrDigestMismatch: the bytes fetched do not hash to the digest.
	ErrDigestMismatch = errors.New("codefetch: digest mismatch")
	// ErrInvalid: a malformed digest or archive.
	ErrInvalid = errors.New("codefetch: invalid")
	// ErrTooLarge: a package or its extracted tree exceeds a limit.
	ErrTooLarge = errors.New("codefetch: too large")
)

// DefaultMaxPackageBytes bounds a zipped package: 64 MiB, above Lambda's
// 50 MB direct-upload limit.
const DefaultMaxPackageBytes = 64 << 20

// Source fetches function packages by digest.
type Source interface {
	// Fetch writes the package whose digest is "sha256:<hex>" to w and
	// returns nil only if the bytes written hash to the digest. On error,
	// whatever was written to w must be discarded. A missing package is
	// ErrNotFound; Fetch MUST return when ctx is done.
	Fetch(ctx context.Context, digest string, w io.Writer) error
}

// ParseDigest checks a "sha256:<hex>" digest and returns its lowercase hex.
func ParseDigest(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != sha256.Size*2 {
		return "", fmt.Errorf("digest %q: want sha256:<64 hex>: %w", digest, ErrInvalid)
	}
	if _, err := hex.DecodeString(h); err != nil || strings.ToLower(h) != h {
		return "", fmt.Errorf("digest %q: want lowercase hex: %w", digest, ErrInvalid)
	}
	return h, nil
}

// verifier copies to w while hashing and bounds the size.
type verifier struct {
	w   io.Writer
	h   hash.Hash
	n   int64
	max int64
}

func newVerifier(w io.Writer, max int64) *verifier {
	if max <= 0 {
		max = DefaultMaxPackageBytes
	}
	return &verifier{w: w, h: sha256.New(), max: max}
}

func (v *verifier) Write(p []byte) (int, error) {
	if v.n+int64(len(p)) > v.max {
		return 0, fmt.Errorf("package over %d bytes: %w", v.max, ErrTooLarge)
	}
	v.n += int64(len(p))
	v.h.Write(p)
	return v.w.Write(p)
}

func (v *verifier) check(wantHex string) error {
	got := hex.EncodeToString(v.h.Sum(nil))
	if got != wantHex {
		return fmt.Errorf("want sha256:%s, got sha256:%s: %w", wantHex, got, ErrDigestMismatch)
	}
	return nil
}

// ctxReader fails reads once ctx is done, so that copies of large local
// files honour cancellation.
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

// Dir reads packages from a content-addressed store on the local disk:
// <Root>/sha256/<hex>.zip, as the engine writes them.
type Dir struct {
	Root string
	// MaxBytes bounds a package. Default: DefaultMaxPackageBytes.
	MaxBytes int64
}

var _ Source = Dir{}

// Fetch implements Source.
func (d Dir) Fetch(ctx context.Context, digest string, w io.Writer) error {
	h, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(d.Root, "sha256", h+".zip"))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s in %s: %w", digest, d.Root, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("codefetch: open %s: %w", digest, err)
	}
	defer f.Close()
	v := newVerifier(w, d.MaxBytes)
	if _, err := io.Copy(v, ctxReader{ctx, f}); err != nil {
		return fmt.Errorf("codefetch: read %s: %w", digest, err)
	}
	return v.check(h)
}

// HTTP fetches packages from emberd: GET <BaseURL>/v1/code/sha256:<hex>.
type HTTP struct {
	// BaseURL is e.g. "http://127.0.0.1:7946". Required.
	BaseURL string
	// Client defaults to http.DefaultClient.
	Client *http.Client
	// Header is added to every request (e.g. an Authorization token).
	Header http.Header
	// MaxBytes bounds a package. Default: DefaultMaxPackageBytes.
	MaxBytes int64
}

var _ Source = HTTP{}

// Fetch implements Source.
func (s HTTP) Fetch(ctx context.Context, digest string, w io.Writer) error {
	h, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	url := strings.TrimRight(s.BaseURL, "/") + "/v1/code/sha256:" + h
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	for k, vs := range s.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	c := s.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("codefetch: get %s: %w", digest, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s from %s: %w", digest, s.BaseURL, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("codefetch: get %s: HTTP %s", digest, resp.Status)
	}
	v := newVerifier(w, s.MaxBytes)
	if _, err := io.Copy(v, resp.Body); err != nil {
		return fmt.Errorf("codefetch: read %s: %w", digest, err)
	}
	return v.check(h)
}

// FetchFile fetches digest from src into path, atomically: path appears
// only once the whole package is there and its digest verified (again,
// independently of src). An existing path is verified and kept if it is
// intact, replaced otherwise.
func FetchFile(ctx context.Context, src Source, digest, path string) error {
	h, err := ParseDigest(digest)
	if err != nil {
		return err
	}
	if f, err := os.Open(path); err == nil {
		v := newVerifier(io.Discard, 1<<62)
		_, cerr := io.Copy(v, f)
		f.Close()
		if cerr == nil && v.check(h) == nil {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fetch-*")
	if err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	v := newVerifier(tmp, 1<<62)
	ferr := src.Fetch(ctx, digest, v)
	cerr := tmp.Close()
	if ferr != nil {
		return ferr
	}
	if cerr != nil {
		return fmt.Errorf("codefetch: write %s: %w", path, cerr)
	}
	if err := v.check(h); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("codefetch: %w", err)
	}
	return nil
}
