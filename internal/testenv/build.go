package testenv

import (
	"archive/zip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// Module is this repository's module path.
const Module = "github.com/ember-run/ember"

// Build compiles a main package of this module (e.g. "cmd/ember-init") as
// a static binary at out, with the toolchain running the tests.
func Build(pkg, out string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	cmd := exec.Command(goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", out, Module+"/"+pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// BuildInit builds ember-init at out and ember-shim beside it, as make
// build does: the instance image takes both.
func BuildInit(out string) error {
	if err := Build("cmd/ember-init", out); err != nil {
		return err
	}
	return Build("cmd/ember-shim", filepath.Join(filepath.Dir(out), "ember-shim"))
}

// Example builds examples/<name> (an aws-lambda-go function) as dir/bootstrap.
func Example(name, dir string) error {
	return Build("examples/"+name, filepath.Join(dir, "bootstrap"))
}

// ExampleZip builds examples/<name> and packs it as a function package (a
// zip with an executable bootstrap at its root) at zipPath.
func ExampleZip(name, zipPath string) error {
	dir, err := os.MkdirTemp("", "ember-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := Example(name, dir); err != nil {
		return err
	}
	return ZipBootstrap(filepath.Join(dir, "bootstrap"), zipPath)
}

// ZipBootstrap packs one executable as a package's bootstrap.
func ZipBootstrap(bootstrap, zipPath string) error {
	in, err := os.Open(bootstrap)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(zipPath)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(out)
	h := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err == nil {
		_, err = io.Copy(w, in)
	}
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func goTool() string {
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return "go"
}
