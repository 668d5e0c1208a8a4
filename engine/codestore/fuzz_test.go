package codestore

import (
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-run/ember/hostagent/codefetch"
)

func zipOf(t testing.TB, files map[string]string, modes map[string]fs.FileMode) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		fh := &zip.FileHeader{Name: name, Method: zip.Deflate}
		if m, ok := modes[name]; ok {
			fh.SetMode(m)
		} else {
			fh.SetMode(0o644)
		}
		w, err := zw.CreateHeader(fh)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write([]byte(body))
	}
	_ = zw.Close()
	return buf.Bytes()
}

// FuzzValidate: whatever the bytes, validation rejects with ErrInvalid or
// accepts; and what it accepts has an executable bootstrap and extracts
// (as host agents do) entirely inside the destination.
func FuzzValidate(f *testing.F) {
	f.Add(zipOf(f, map[string]string{"bootstrap": "#!/bin/sh\n", "lib/a.txt": "a"}, map[string]fs.FileMode{"bootstrap": 0o755}))
	f.Add(zipOf(f, map[string]string{"bootstrap": "x", "../evil": "x"}, map[string]fs.FileMode{"bootstrap": 0o755}))
	f.Add(zipOf(f, map[string]string{"bootstrap": "x", "link": "../../etc"}, map[string]fs.FileMode{"bootstrap": 0o755, "link": fs.ModeSymlink | 0o777}))
	f.Add(zipOf(f, map[string]string{"bootstrap": "lib/real", "lib/real": "#!/bin/sh\n"}, map[string]fs.FileMode{"bootstrap": fs.ModeSymlink | 0o777, "lib/real": 0o755}))
	f.Add([]byte("PK\x03\x04 not really a zip"))
	cfg := Config{Dir: "/unused"}.withDefaults()
	cfg.MaxUnzippedBytes, cfg.MaxEntries = 1<<20, 64
	f.Fuzz(func(t *testing.T, b []byte) {
		err := validate(bytes.NewReader(b), int64(len(b)), cfg)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("rejection without ErrInvalid: %v", err)
			}
			return
		}
		dir := t.TempDir()
		zp := filepath.Join(dir, "p.zip")
		if err := os.WriteFile(zp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(dir, "out")
		if err := codefetch.Extract(zp, dest, codefetch.Limits{MaxBytes: 2 << 20}); err != nil {
			t.Fatalf("a validated package does not extract: %v", err)
		}
		st, err := os.Stat(filepath.Join(dest, "bootstrap"))
		if err != nil || st.Mode()&0o111 == 0 || !st.Mode().IsRegular() {
			t.Fatalf("validated package's bootstrap: %v, %v", st, err)
		}
		_ = filepath.WalkDir(dest, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return nil // a dangling link points nowhere: harmless
			}
			if real != dest && !strings.HasPrefix(real, dest+string(filepath.Separator)) {
				t.Fatalf("%s resolves outside the package: %s", p, real)
			}
			return nil
		})
	})
}
