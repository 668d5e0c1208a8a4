package codestore

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"errors"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type zent struct {
	name    string
	mode    fs.FileMode // 0 means 0644 regular file
	body    string
	size    int // if > 0, body is size zero bytes
	noMode  bool
	rawSize uint64 // if > 0, write raw deflate with this (lying) declared size
}

func buildZip(t *testing.T, ents ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		body := []byte(e.body)
		if e.size > 0 {
			body = make([]byte, e.size)
		}
		fh := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if !e.noMode {
			m := e.mode
			if m == 0 {
				m = 0o644
			}
			fh.SetMode(m)
		}
		if e.rawSize > 0 {
			var comp bytes.Buffer
			fw, _ := flate.NewWriter(&comp, flate.BestCompression)
			_, _ = fw.Write(body)
			_ = fw.Close()
			fh.CRC32 = crc32.ChecksumIEEE(body)
			fh.CompressedSize64 = uint64(comp.Len())
			fh.UncompressedSize64 = e.rawSize
			w, err := zw.CreateRaw(fh)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = w.Write(comp.Bytes())
			continue
		}
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func randomText(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return string(b)
}

var boot = zent{name: "bootstrap", mode: 0o755, body: "#!/bin/sh\necho hi\n"}

func newStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	cfg.Dir = t.TempDir()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutValidation(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		cfg     Config
		zip     func(t *testing.T) []byte
		wantErr string // "" = accepted
	}{
		{"good", Config{}, func(t *testing.T) []byte { return buildZip(t, boot, zent{name: "lib/x.txt", body: "x"}) }, ""},
		{"good dir entries and inner symlink", Config{}, func(t *testing.T) []byte {
			return buildZip(t, zent{name: "bin/", mode: fs.ModeDir | 0o755}, zent{name: "bin/real", mode: 0o755, body: "x"},
				zent{name: "bootstrap", mode: fs.ModeSymlink | 0o777, body: "bin/real"},
				zent{name: "bin/up", mode: fs.ModeSymlink | 0o777, body: "../bootstrap"})
		}, ""},
		{"not a zip", Config{}, func(*testing.T) []byte { return []byte("this is not a zip archive at all") }, "not a zip"},
		{"empty", Config{}, func(*testing.T) []byte { return nil }, "not a zip"},
		{"zip slip dotdot", Config{}, func(t *testing.T) []byte { return buildZip(t, boot, zent{name: "../evil", body: "x"}) }, "zip slip"},
		{"zip slip nested dotdot", Config{}, func(t *testing.T) []byte { return buildZip(t, boot, zent{name: "a/../../evil", body: "x"}) }, "zip slip"},
		{"absolute path", Config{}, func(t *testing.T) []byte { return buildZip(t, boot, zent{name: "/etc/passwd", body: "x"}) }, "absolute path"},
		{"backslash path", Config{}, func(t *testing.T) []byte { return buildZip(t, boot, zent{name: "..\\evil", body: "x"}) }, "backslash"},
		{"absolute symlink", Config{}, func(t *testing.T) []byte {
			return buildZip(t, boot, zent{name: "passwd", mode: fs.ModeSymlink | 0o777, body: "/etc/passwd"})
		}, "only relative targets"},
		{"escaping symlink", Config{}, func(t *testing.T) []byte {
			return buildZip(t, boot, zent{name: "a/link", mode: fs.ModeSymlink | 0o777, body: "../../etc/passwd"})
		}, "outside the package"},
		{"over compressed limit", Config{MaxZipBytes: 1024}, func(t *testing.T) []byte {
			return buildZip(t, boot, zent{name: "blob", body: randomText(4096), mode: 0o644})
		}, "over the 1024 byte limit"},
		{"over uncompressed limit", Config{MaxUnzippedBytes: 1 << 20, MaxRatio: 1 << 20}, func(t *testing.T) []byte {
			return buildZip(t, boot, zent{name: "zeros", size: 2 << 20})
		}, "uncompressed size is over the 1048576 byte limit"},
		{"zip bomb ratio", Config{}, func(t *testing.T) []byte { return buildZip(t, boot, zent{name: "zeros", size: 8 << 20}) }, "ratio limit"},
		{"lying declared size", Config{}, func(t *testing.T) []byte {
			return buildZip(t, boot, zent{name: "liar", size: 1 << 20, rawSize: 10})
		}, "corrupt"},
		{"duplicate entry", Config{}, func(t *testing.T) []byte {
			return buildZip(t, boot, zent{name: "lib/x", body: "1"}, zent{name: "lib/x", body: "2"})
		}, "appears twice"},
		// Found by FuzzValidate: a device entry was accepted here, then
		// refused by every agent's extraction.
		{"device entry", Config{}, func(t *testing.T) []byte { return buildZip(t, boot, zent{name: "dev", mode: fs.ModeDevice | 0o600}) }, "not a file, directory or symlink"},
		{"named pipe", Config{}, func(t *testing.T) []byte {
			return buildZip(t, boot, zent{name: "fifo", mode: fs.ModeNamedPipe | 0o600})
		}, "not a file, directory or symlink"},
		{"missing bootstrap", Config{}, func(t *testing.T) []byte { return buildZip(t, zent{name: "main", mode: 0o755, body: "x"}) }, "no bootstrap"},
		{"bootstrap in subdir only", Config{}, func(t *testing.T) []byte { return buildZip(t, zent{name: "app/bootstrap", mode: 0o755, body: "x"}) }, "no bootstrap"},
		{"bootstrap not executable", Config{}, func(t *testing.T) []byte { return buildZip(t, zent{name: "bootstrap", mode: 0o644, body: "x"}) }, "not executable"},
		{"bootstrap without unix mode", Config{}, func(t *testing.T) []byte { return buildZip(t, zent{name: "bootstrap", noMode: true, body: "x"}) }, "not executable"},
		{"bootstrap is a directory", Config{}, func(t *testing.T) []byte {
			return buildZip(t, zent{name: "bootstrap/", mode: fs.ModeDir | 0o755}, zent{name: "bootstrap/x", mode: 0o755, body: "x"})
		}, "is a directory"},
		{"bootstrap symlink outside", Config{}, func(t *testing.T) []byte {
			return buildZip(t, zent{name: "bootstrap", mode: fs.ModeSymlink | 0o777, body: "../bin/sh"})
		}, "outside the package"},
		{"bootstrap symlink absolute", Config{}, func(t *testing.T) []byte {
			return buildZip(t, zent{name: "bootstrap", mode: fs.ModeSymlink | 0o777, body: "/bin/sh"})
		}, "only relative targets"},
		{"bootstrap symlink dangling", Config{}, func(t *testing.T) []byte {
			return buildZip(t, zent{name: "bootstrap", mode: fs.ModeSymlink | 0o777, body: "nothere"})
		}, "not in the package"},
		{"bootstrap symlink loop", Config{}, func(t *testing.T) []byte {
			return buildZip(t, zent{name: "bootstrap", mode: fs.ModeSymlink | 0o777, body: "a"},
				zent{name: "a", mode: fs.ModeSymlink | 0o777, body: "bootstrap"})
		}, "too many levels"},
		{"bootstrap symlink to non-executable", Config{}, func(t *testing.T) []byte {
			return buildZip(t, zent{name: "bootstrap", mode: fs.ModeSymlink | 0o777, body: "x"}, zent{name: "x", body: "x"})
		}, "not executable"},
		{"too many entries", Config{MaxEntries: 2}, func(t *testing.T) []byte {
			return buildZip(t, boot, zent{name: "a", body: "a"}, zent{name: "b", body: "b"})
		}, "entries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, tc.cfg)
			data := tc.zip(t)
			pkg, err := s.Put(ctx, bytes.NewReader(data))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Put: %v", err)
				}
				if pkg.Size != int64(len(data)) || !strings.HasPrefix(pkg.Digest, "sha256:") {
					t.Fatalf("bad package %+v", pkg)
				}
				return
			}
			if err == nil {
				t.Fatalf("Put accepted a bad package, want error containing %q", tc.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			if strings.Contains(tc.wantErr, "limit") && !strings.Contains(tc.wantErr, "ratio") && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("size error %v does not wrap ErrTooLarge", err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
			left, _ := os.ReadDir(s.dir)
			if len(left) != 0 {
				t.Fatalf("rejected package left files behind: %v", left)
			}
		})
	}
}

func TestStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, Config{})
	data := buildZip(t, boot)
	pkg, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Put(ctx, bytes.NewReader(data))
	if err != nil || again != pkg {
		t.Fatalf("second Put = %+v, %v; want %+v", again, err, pkg)
	}
	ok, err := s.Has(pkg.Digest)
	if err != nil || !ok {
		t.Fatalf("Has = %v, %v", ok, err)
	}
	rc, size, err := s.Open(pkg.Digest)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if size != int64(len(data)) || !bytes.Equal(got, data) {
		t.Fatalf("Open returned %d bytes (size %d), want %d", len(got), size, len(data))
	}
	p, _ := s.Path(pkg.Digest)
	if filepath.Dir(p) != filepath.Join(s.cfg.Dir, "sha256") || !strings.HasSuffix(p, pkg.Digest[7:]+".zip") {
		t.Fatalf("Path = %s", p)
	}
	if err := s.Delete(pkg.Digest); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(pkg.Digest); err != nil {
		t.Fatalf("deleting a missing package: %v", err)
	}
	if _, _, err := s.Open(pkg.Digest); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open after Delete: %v, want ErrNotFound", err)
	}
	if ok, _ := s.Has(pkg.Digest); ok {
		t.Fatal("Has after Delete")
	}
}

func TestDigestValidation(t *testing.T) {
	s := newStore(t, Config{})
	for _, d := range []string{"", "sha256:", "sha256:../../etc/passwd", "md5:" + strings.Repeat("a", 64),
		"sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("a", 63) + "/", "sha256:" + strings.Repeat("a", 65)} {
		if _, err := s.Path(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("Path(%q) = %v, want ErrInvalid", d, err)
		}
		if _, _, err := s.Open(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%q) = %v, want ErrInvalid", d, err)
		}
	}
}

func TestPutCanceled(t *testing.T) {
	s := newStore(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Put(ctx, bytes.NewReader(buildZip(t, boot))); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with canceled ctx: %v", err)
	}
}

// TestZipCLI checks a package made by Info-ZIP's zip, which stores unix
// modes in the external attributes, the way most users will build one.
func TestZipCLI(t *testing.T) {
	zipBin, err := exec.LookPath("zip")
	if err != nil {
		t.Fatal("Info-ZIP zip is not installed: run deploy/setup.sh install")
	}
	for _, tc := range []struct {
		mode fs.FileMode
		ok   bool
	}{{0o755, true}, {0o644, false}} {
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "bootstrap"), []byte("#!/bin/sh\n"), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(src, "bootstrap"), tc.mode); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "fn.zip")
		cmd := exec.Command(zipBin, "-q", "-r", out, ".")
		cmd.Dir = src
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("zip: %v: %s", err, b)
		}
		f, err := os.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		_, err = newStore(t, Config{}).Put(context.Background(), f)
		f.Close()
		if tc.ok != (err == nil) {
			t.Fatalf("bootstrap mode %v: Put error %v, want ok=%v", tc.mode, err, tc.ok)
		}
	}
}
