package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
)

// Option configures Ensure.
type Option func(*options) error

type options struct {
	busybox     string
	snapshotter string
}

// WithBusybox sets the host path of the static busybox binary.
// Default: /bin/busybox (Debian's busybox-static).
func WithBusybox(path string) Option {
	return func(o *options) error {
		if path == "" {
			return fmt.Errorf("busybox path must not be empty")
		}
		o.busybox = path
		return nil
	}
}

// WithSnapshotter sets the snapshotter the image is unpacked for.
// Default: overlayfs.
func WithSnapshotter(name string) Option {
	return func(o *options) error {
		if name == "" {
			return fmt.Errorf("snapshotter must not be empty")
		}
		o.snapshotter = name
		return nil
	}
}

// LoadInputs reads the image inputs from the host: the busybox binary at
// busyboxPath, its applet list (busybox --list-full), the ember-init
// binary at initBinary and, if there is one beside it, ember-shim.
func LoadInputs(busyboxPath, initBinary string) (Inputs, error) {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return Inputs{}, fmt.Errorf("read busybox: %w", err)
	}
	init, err := os.ReadFile(initBinary)
	if err != nil {
		return Inputs{}, fmt.Errorf("read ember-init: %w", err)
	}
	// ember-shim beside it, if it was built (make build does).
	var shim []byte
	shimPath := filepath.Join(filepath.Dir(initBinary), path.Base(ShimPath))
	if st, err := os.Stat(shimPath); err == nil && st.Mode().IsRegular() {
		if shim, err = os.ReadFile(shimPath); err != nil {
			return Inputs{}, fmt.Errorf("read ember-shim: %w", err)
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Inputs{}, fmt.Errorf("ember-shim: %w", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(busyboxPath, "--list-full")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Inputs{}, fmt.Errorf("list busybox applets: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return Inputs{Busybox: bb, Applets: strings.Fields(string(out)), Init: init, Shim: shim}, nil
}

// Ensure makes sure the instance image built from initBinary (the static
// ember-init) and busybox exists in namespace and is unpacked for the
// snapshotter, and returns its name. It builds and imports the image only
// when no image of that name exists, that is when an input changed, and
// unpacks it only when it is not yet unpacked.
func Ensure(ctx context.Context, client *containerd.Client, namespace, initBinary string, opts ...Option) (string, error) {
	o := options{busybox: "/bin/busybox", snapshotter: "overlayfs"}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return "", fmt.Errorf("instance image option: %w", err)
		}
	}
	if namespace == "" {
		return "", fmt.Errorf("instance image: namespace must not be empty")
	}
	in, err := LoadInputs(o.busybox, initBinary)
	if err != nil {
		return "", fmt.Errorf("instance image: %w", err)
	}
	name := in.Name()
	ctx = namespaces.WithNamespace(ctx, namespace)

	img, err := client.GetImage(ctx, name)
	switch {
	case err == nil:
	case errdefs.IsNotFound(err):
		var buf bytes.Buffer
		if err := Build(&buf, in); err != nil {
			return "", err
		}
		imported, err := client.Import(ctx, &buf)
		if err != nil {
			return "", fmt.Errorf("import instance image %s: %w", name, err)
		}
		found := false
		for _, i := range imported {
			if i.Name == name {
				img = containerd.NewImage(client, i)
				found = true
			}
		}
		if !found {
			return "", fmt.Errorf("import instance image %s: image not in the imported set", name)
		}
	default:
		return "", fmt.Errorf("look up instance image %s: %w", name, err)
	}

	unpacked, err := img.IsUnpacked(ctx, o.snapshotter)
	if err != nil {
		return "", fmt.Errorf("check instance image %s unpacked: %w", name, err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, o.snapshotter); err != nil {
			return "", fmt.Errorf("unpack instance image %s for %s: %w", name, o.snapshotter, err)
		}
	}
	return name, nil
}
