package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	// Repository is the name every instance image carries, before its tag.
	Repository = "ember.local/instance"
	// FormatVersion is hashed into the tag: bump it whenever Build changes
	// what it writes, so hosts rebuild their image.
	FormatVersion = "ember-instance-image/3"

	// InitPath is where ember-init lives inside the image.
	InitPath = "/sbin/ember-init"
	// ShimPath is where ember-shim lives inside the image, beside
	// ember-init, which starts it for each container (when the image has
	// it: else ember-init is the shim itself).
	ShimPath = "/sbin/ember-shim"
	// BusyboxPath is where busybox lives inside the image.
	BusyboxPath = "/bin/busybox"

	// annotationImageName is containerd's images.AnnotationImageName: the
	// full name the importer gives the image.
	annotationImageName = "io.containerd.image.name"
)

// epoch is the mtime of every file in the image, for reproducible bytes.
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Inputs are everything an image is built from.
type Inputs struct {
	// Busybox is the static busybox binary.
	Busybox []byte
	// Applets are busybox's applets as relative paths ("bin/sh",
	// "usr/bin/awk"), each written as a symlink to /bin/busybox. They
	// derive from Busybox (busybox --list-full), so they are not hashed.
	Applets []string
	// Init is the static ember-init binary.
	Init []byte
	// Shim is the static ember-shim binary, if any.
	Shim []byte
}

// Tag is the image tag for in: the first 16 hex digits of the sha256 of the
// format version, busybox, ember-init and ember-shim.
func (in Inputs) Tag() string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(FormatVersion), in.Busybox, in.Init, in.Shim} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Name is the full image name for in: Repository:Tag.
func (in Inputs) Name() string { return Repository + ":" + in.Tag() }

// Build writes in as an OCI image layout tar to w, the image named in.Name().
// The output is deterministic: the same inputs give the same bytes.
func Build(w io.Writer, in Inputs) error {
	if len(in.Busybox) == 0 || len(in.Init) == 0 {
		return fmt.Errorf("build instance image: busybox and ember-init must not be empty")
	}
	var layer bytes.Buffer
	if err := writeRootFS(&layer, in); err != nil {
		return fmt.Errorf("build instance image rootfs: %w", err)
	}
	layerDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayer,
		Digest:    digest.FromBytes(layer.Bytes()),
		Size:      int64(layer.Len()),
	}
	config := ocispec.Image{
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			Entrypoint: []string{InitPath},
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			WorkingDir: "/",
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layerDesc.Digest}},
	}
	configBytes, err := json.Marshal(config)
	if err != nil {
		return fmt.Errorf("marshal image config: %w", err)
	}
	configDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.FromBytes(configBytes),
		Size:      int64(len(configBytes)),
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	}
	manifestBytes, err := json.Marshal(manifest)
	if err != nil {
		return fmt.Errorf("marshal image manifest: %w", err)
	}
	manifestDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifestBytes),
		Size:      int64(len(manifestBytes)),
		Platform:  &config.Platform,
		Annotations: map[string]string{
			annotationImageName:       in.Name(),
			ocispec.AnnotationRefName: in.Tag(),
		},
	}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	}
	indexBytes, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("marshal image index: %w", err)
	}
	layoutBytes, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return fmt.Errorf("marshal oci-layout: %w", err)
	}

	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{ocispec.ImageLayoutFile, layoutBytes},
		{"index.json", indexBytes},
		{blobPath(manifestDesc.Digest), manifestBytes},
		{blobPath(configDesc.Digest), configBytes},
		{blobPath(layerDesc.Digest), layer.Bytes()},
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("close image tar: %w", err)
	}
	return nil
}

func blobPath(d digest.Digest) string {
	return path.Join("blobs", d.Algorithm().String(), d.Encoded())
}

const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"sbx_user1051:x:1000:1000::/tmp:/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"sbx_user1051:x:1000:\n" +
		"nogroup:x:65534:\n"
)

// writeRootFS writes the instance root filesystem as one layer tar.
func writeRootFS(w io.Writer, in Inputs) error {
	dirs := map[string]int64{
		"bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
		"etc": 0o755, "root": 0o700, "var": 0o755, "var/task": 0o755,
		"ember": 0o755, "ember/sock": 0o755, "ember/code": 0o755, "ember/logs": 0o755, "ember/state": 0o755, "mnt": 0o755,
		"tmp": 0o1777, "proc": 0o555, "sys": 0o555, "dev": 0o755, "run": 0o755,
	}
	links := map[string]bool{}
	for _, a := range in.Applets {
		a = strings.TrimPrefix(path.Clean("/"+a), "/")
		if a == "" || a == strings.TrimPrefix(BusyboxPath, "/") || a == strings.TrimPrefix(InitPath, "/") || a == strings.TrimPrefix(ShimPath, "/") {
			continue
		}
		links[a] = true
		for d := path.Dir(a); d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	tw := tar.NewWriter(w)
	for _, d := range sortedKeys(dirs) {
		hdr := header(d+"/", tar.TypeDir, dirs[d])
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	type file struct {
		name string
		mode int64
		data []byte
	}
	files := []file{
		{strings.TrimPrefix(BusyboxPath, "/"), 0o755, in.Busybox},
		{strings.TrimPrefix(InitPath, "/"), 0o755, in.Init},
		{"etc/passwd", 0o644, []byte(passwd)},
		{"etc/group", 0o644, []byte(group)},
		{"etc/hostname", 0o644, []byte("ember\n")},
		{"etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost\n")},
		// A mount point: the agent binds the host's resolvers over it.
		{"etc/resolv.conf", 0o644, nil},
	}
	if len(in.Shim) > 0 {
		files = append(files, file{strings.TrimPrefix(ShimPath, "/"), 0o755, in.Shim})
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, f.mode, f.data); err != nil {
			return err
		}
	}
	for _, l := range sortedKeys(links) {
		hdr := header(l, tar.TypeSymlink, 0o777)
		hdr.Linkname = BusyboxPath
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	return tw.Close()
}

func header(name string, typ byte, mode int64) *tar.Header {
	return &tar.Header{
		Typeflag: typ,
		Name:     name,
		Mode:     mode,
		ModTime:  epoch,
		Format:   tar.FormatPAX,
	}
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	hdr := header(name, tar.TypeReg, mode)
	hdr.Size = int64(len(data))
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
