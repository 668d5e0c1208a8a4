package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"

	"github.com/ember-run/ember/hostagent/image"
	"github.com/ember-run/ember/internal/testenv"
)

func TestBuildDeterministicAndComplete(t *testing.T) {
	in, err := image.LoadInputs("/bin/busybox", "/bin/busybox") // any static binary stands in for ember-init
	if err != nil {
		t.Fatal(err)
	}
	if in.Shim != nil {
		t.Fatalf("LoadInputs found an ember-shim beside /bin/busybox")
	}
	in.Init = []byte("#!/bin/sh\necho init\n")
	in.Shim = []byte("#!/bin/sh\necho shim\n")
	var a, b bytes.Buffer
	if err := image.Build(&a, in); err != nil {
		t.Fatal(err)
	}
	if err := image.Build(&b, in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two builds of the same inputs differ")
	}

	other := in
	other.Init = []byte("different")
	if in.Tag() == other.Tag() {
		t.Fatal("changing ember-init did not change the tag")
	}
	other = in
	other.Shim = nil
	if in.Tag() == other.Tag() {
		t.Fatal("leaving ember-shim out did not change the tag")
	}
	if len(in.Tag()) != 16 {
		t.Fatalf("tag %q: want 16 hex digits", in.Tag())
	}

	// Find the layer (the largest blob) and check the root filesystem.
	outer := readTar(t, a.Bytes())
	for _, f := range []string{"oci-layout", "index.json"} {
		if _, ok := outer[f]; !ok {
			t.Fatalf("image tar lacks %s", f)
		}
	}
	var layer []byte
	for _, e := range outer {
		if len(e.data) > len(layer) {
			layer = e.data
		}
	}
	root := readTar(t, layer)
	want := map[string]byte{
		"bin/busybox": tar.TypeReg, "sbin/ember-init": tar.TypeReg, "etc/passwd": tar.TypeReg,
		"etc/group": tar.TypeReg, "bin/sh": tar.TypeSymlink, "bin/ls": tar.TypeSymlink, "bin/cat": tar.TypeSymlink,
		"ember/sock/": tar.TypeDir, "ember/code/": tar.TypeDir, "var/task/": tar.TypeDir, "tmp/": tar.TypeDir,
		"proc/": tar.TypeDir, "sys/": tar.TypeDir, "dev/": tar.TypeDir, "run/": tar.TypeDir,
	}
	for name, typ := range want {
		e, ok := root[name]
		if !ok {
			t.Errorf("rootfs lacks %s", name)
			continue
		}
		if e.hdr.Typeflag != typ {
			t.Errorf("%s: type %c, want %c", name, e.hdr.Typeflag, typ)
		}
		if !e.hdr.ModTime.Equal(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: mtime %v is not the fixed epoch", name, e.hdr.ModTime)
		}
	}
	if got := root["bin/sh"].hdr.Linkname; got != "/bin/busybox" {
		t.Errorf("bin/sh links to %q", got)
	}
	if got := string(root["sbin/ember-init"].data); got != string(in.Init) {
		t.Errorf("sbin/ember-init content %q", got)
	}
	if e := root["sbin/ember-shim"]; string(e.data) != string(in.Shim) || e.hdr.Mode != 0o755 {
		t.Errorf("sbin/ember-shim content %q mode %o", e.data, e.hdr.Mode)
	}
	if !bytes.Contains(root["etc/passwd"].data, []byte("sbx_user1051:x:1000:1000:")) {
		t.Errorf("passwd lacks sbx_user1051: %s", root["etc/passwd"].data)
	}
}

// LoadInputs takes the ember-shim beside ember-init.
func TestLoadInputsTakesTheShimBeside(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"ember-init": "init", "ember-shim": "shim"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	in, err := image.LoadInputs("/bin/busybox", filepath.Join(dir, "ember-init"))
	if err != nil {
		t.Fatal(err)
	}
	if string(in.Init) != "init" || string(in.Shim) != "shim" {
		t.Fatalf("inputs: init %q shim %q", in.Init, in.Shim)
	}
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

func readTar(t *testing.T, b []byte) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = entry{hdr: hdr, data: data}
	}
}

func TestEnsureImportsOnlyWhenInputsChange(t *testing.T) {
	client, ns := testenv.Containerd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	initBin := filepath.Join(dir, "ember-init")
	if err := os.WriteFile(initBin, []byte("init v1"), 0o755); err != nil {
		t.Fatal(err)
	}

	name, err := image.Ensure(ctx, client, ns, initBin)
	if err != nil {
		t.Fatal(err)
	}
	nctx := namespaces.WithNamespace(ctx, ns)
	img, err := client.GetImage(nctx, name)
	if err != nil {
		t.Fatalf("image %s not found after Ensure: %v", name, err)
	}
	if ok, err := img.IsUnpacked(nctx, "overlayfs"); err != nil || !ok {
		t.Fatalf("image not unpacked: %v %v", ok, err)
	}
	created := img.Metadata().CreatedAt

	again, err := image.Ensure(ctx, client, ns, initBin)
	if err != nil {
		t.Fatal(err)
	}
	if again != name {
		t.Fatalf("second Ensure named %s, first %s", again, name)
	}
	img2, err := client.GetImage(nctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !img2.Metadata().CreatedAt.Equal(created) {
		t.Fatal("second Ensure re-imported an unchanged image")
	}

	if err := os.WriteFile(initBin, []byte("init v2"), 0o755); err != nil {
		t.Fatal(err)
	}
	changed, err := image.Ensure(ctx, client, ns, initBin)
	if err != nil {
		t.Fatal(err)
	}
	if changed == name {
		t.Fatal("changing ember-init kept the image name")
	}
	if _, err := client.GetImage(nctx, changed); err != nil {
		t.Fatalf("new image %s missing: %v", changed, err)
	}
}
