package codefetch

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct {
	name, body string
	mode       fs.FileMode
}

func makeZip(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestParseDigest(t *testing.T) {
	good := digestOf([]byte("x"))
	if h, err := ParseDigest(good); err != nil || "sha256:"+h != good {
		t.Fatalf("ParseDigest(%q) = %q, %v", good, h, err)
	}
	for _, bad := range []string{"", "sha256:", "sha512:" + good[7:], good[7:], "sha256:" + strings.ToUpper(good[7:]), good + "00", "sha256:" + strings.Repeat("g", 64)} {
		if _, err := ParseDigest(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDigest(%q) err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestDirFetch(t *testing.T) {
	dir := t.TempDir()
	pkg := []byte("package bytes")
	d := digestOf(pkg)
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sha256", d[7:]+".zip"), pkg, 0o644); err != nil {
		t.Fatal(err)
	}
	// A corrupted store entry: the name says one digest, the bytes another.
	corrupt := digestOf([]byte("other"))
	if err := os.WriteFile(filepath.Join(dir, "sha256", corrupt[7:]+".zip"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := Dir{Root: dir}
	var buf bytes.Buffer
	if err := src.Fetch(context.Background(), d, &buf); err != nil || !bytes.Equal(buf.Bytes(), pkg) {
		t.Fatalf("Fetch = %q, %v", buf.Bytes(), err)
	}
	if err := src.Fetch(context.Background(), corrupt, &bytes.Buffer{}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("corrupt entry: err = %v, want ErrDigestMismatch", err)
	}
	if err := src.Fetch(context.Background(), digestOf([]byte("missing")), &bytes.Buffer{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: err = %v, want ErrNotFound", err)
	}
	if err := (Dir{Root: dir, MaxBytes: 4}).Fetch(context.Background(), d, &bytes.Buffer{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxBytes: err = %v, want ErrTooLarge", err)
	}

	// FetchFile verifies and lands the file atomically; a bad digest leaves nothing.
	out := filepath.Join(t.TempDir(), "cache", "p.zip")
	if err := FetchFile(context.Background(), src, d, out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, pkg) {
		t.Fatalf("FetchFile wrote %q", b)
	}
	bad := filepath.Join(filepath.Dir(out), "bad.zip")
	if err := FetchFile(context.Background(), src, corrupt, bad); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("FetchFile corrupt: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 1 {
		t.Fatalf("FetchFile left %d files, want only p.zip", len(ents))
	}
	// A damaged cached file is replaced.
	if err := os.WriteFile(out, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := FetchFile(context.Background(), src, d, out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, pkg) {
		t.Fatalf("FetchFile did not replace a damaged file: %q", b)
	}
}

func TestHTTPFetch(t *testing.T) {
	pkg := []byte("zip bytes over http")
	d := digestOf(pkg)
	lying := digestOf([]byte("something else"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/v1/code/" + d:
			w.Write(pkg)
		case "/v1/code/" + lying:
			w.Write([]byte("not what was asked"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	src := HTTP{BaseURL: srv.URL + "/", Header: http.Header{"Authorization": {"Bearer t"}}}
	var buf bytes.Buffer
	if err := src.Fetch(context.Background(), d, &buf); err != nil || !bytes.Equal(buf.Bytes(), pkg) {
		t.Fatalf("Fetch = %q, %v", buf.Bytes(), err)
	}
	if err := src.Fetch(context.Background(), lying, &bytes.Buffer{}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("lying server: err = %v", err)
	}
	if err := src.Fetch(context.Background(), digestOf(nil), &bytes.Buffer{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: err = %v", err)
	}
	if err := (HTTP{BaseURL: srv.URL}).Fetch(context.Background(), d, &bytes.Buffer{}); err == nil {
		t.Fatal("unauthorised fetch succeeded")
	}
}

func TestExtract(t *testing.T) {
	z := makeZip(t, []entry{
		{name: "bootstrap", body: "#!/bin/sh\n", mode: 0o700},
		{name: "lib/", mode: fs.ModeDir | 0o700},
		{name: "lib/data.txt", body: "data", mode: 0o600},
		{name: "lib/link", body: "data.txt", mode: fs.ModeSymlink | 0o777},
		{name: "uplink", body: "lib/../bootstrap", mode: fs.ModeSymlink | 0o777},
		{name: "deep/a/b/c.txt", body: "c"},
	})
	zp := filepath.Join(t.TempDir(), "p.zip")
	if err := os.WriteFile(zp, z, 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "code", "abc")
	if err := Extract(zp, dest, Limits{}); err != nil {
		t.Fatal(err)
	}
	checks := map[string]fs.FileMode{"bootstrap": 0o755, "lib/data.txt": 0o644, "deep/a/b/c.txt": 0o644}
	for name, want := range checks {
		st, err := os.Stat(filepath.Join(dest, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dest, "lib/link")); err != nil || string(b) != "data" {
		t.Fatalf("symlink inside the tree: %q, %v", b, err)
	}
	if err := Extract(zp, dest, Limits{}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("extract over an existing dir: %v", err)
	}
}

func TestExtractRefuses(t *testing.T) {
	big := strings.Repeat("x", 4096)
	cases := []struct {
		name    string
		entries []entry
		lim     Limits
		want    error
	}{
		{"zip slip", []entry{{name: "../evil", body: "x"}}, Limits{}, ErrInvalid},
		{"zip slip nested", []entry{{name: "a/../../evil", body: "x"}}, Limits{}, ErrInvalid},
		{"absolute", []entry{{name: "/etc/evil", body: "x"}}, Limits{}, ErrInvalid},
		{"backslash", []entry{{name: `..\evil`, body: "x"}}, Limits{}, ErrInvalid},
		{"symlink escape", []entry{{name: "l", body: "../../etc/passwd", mode: fs.ModeSymlink | 0o777}}, Limits{}, ErrInvalid},
		{"symlink escape nested", []entry{{name: "a/l", body: "../..", mode: fs.ModeSymlink | 0o777}}, Limits{}, ErrInvalid},
		{"absolute symlink", []entry{{name: "l", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}}, Limits{}, ErrInvalid},
		{"duplicate", []entry{{name: "a", body: "1"}, {name: "a", body: "2"}}, Limits{}, fs.ErrExist},
		{"write through symlink", []entry{{name: "l", body: "x", mode: fs.ModeSymlink | 0o777}, {name: "l", body: "y"}}, Limits{}, fs.ErrExist},
		{"device", []entry{{name: "dev", mode: fs.ModeDevice | 0o644}}, Limits{}, ErrInvalid},
		{"too large", []entry{{name: "a", body: big}, {name: "b", body: big}}, Limits{MaxBytes: 6000}, ErrTooLarge},
		{"too many", []entry{{name: "a"}, {name: "b"}, {name: "c"}}, Limits{MaxEntries: 2}, ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			zp := filepath.Join(base, "p.zip")
			if err := os.WriteFile(zp, makeZip(t, tc.entries), 0o644); err != nil {
				t.Fatal(err)
			}
			dest := filepath.Join(base, "out", "code")
			err := Extract(zp, dest, tc.lim)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if _, err := os.Lstat(dest); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("dest exists after a refused extract: %v", err)
			}
			// Nothing landed outside dest either.
			ents, _ := os.ReadDir(filepath.Join(base, "out"))
			if len(ents) != 0 {
				t.Fatalf("left %d entries beside dest", len(ents))
			}
			if _, err := os.Lstat(filepath.Join(base, "evil")); err == nil {
				t.Fatal("zip slip wrote outside the tree")
			}
		})
	}
}
