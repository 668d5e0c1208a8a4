package statefs

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Store is the state resources under one root directory. It is safe for
// concurrent use.
type Store struct {
	root string
	opt  Options
	mu   sync.Mutex            // serialises creating and mounting resources
	weed map[string]*weedMount // resource mount point -> its weed mount (Options.Filer)
	gen  uint64                // weed mounts started

	amu      sync.Mutex
	attached map[string]binding // attach point -> what is bound there
}

// binding is a resource bound at an attach point: "<tenant>/<name>" and
// the generation of the mount it was bound from (0: image files).
type binding struct {
	res string
	gen uint64
}

// safeName is a tenant's or resource's name: what the registry allows
// (no dots, no slashes).
var safeName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// New returns a store under root (created 0700: only the host's root
// reaches the resources there; instances get them through binds), keeping
// the resources where opt says.
func New(root string, opt Options) (*Store, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("statefs: root %q must be absolute", root)
	}
	if opt.Filer != "" {
		if opt.Weed == "" {
			opt.Weed = "weed"
		}
		if err := checkFiler(opt); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("statefs: %w", err)
	}
	// Mount points are matched against /proc/self/mountinfo, which shows
	// paths with symlinks resolved.
	real, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("statefs: %w", err)
	}
	root = real
	for _, tool := range []string{"mkfs.ext4", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("statefs: %s not found (e2fsprogs, mount): %w", tool, err)
		}
	}
	return &Store{root: root, opt: opt, weed: map[string]*weedMount{}, attached: map[string]binding{}}, nil
}

// Prepare makes dir (an instance's state directory on the host) a mount
// point with shared propagation, so that what is mounted under it later
// reaches the instance's slave copy.
func (s *Store) Prepare(dir string) error {
	// 0711: the instance's root traverses it to the resources bound in it.
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fmt.Errorf("statefs: %w", err)
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("statefs: bind %s: %w", dir, err)
	}
	// Private first: a peer group of its own, not the host root's.
	for _, flag := range []uintptr{unix.MS_PRIVATE, unix.MS_SHARED} {
		if err := unix.Mount("", dir, "", flag, ""); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
			return fmt.Errorf("statefs: set the propagation of %s: %w", dir, err)
		}
	}
	return nil
}

// Attach mounts the tenant's resource name at dir/name (dir made by
// Prepare), creating the resource with sizeMB if it does not exist. An
// existing resource keeps its size. Attaching twice is a no-op.
func (s *Store) Attach(tenant, name string, sizeMB int64, dir string) error {
	if !safeName.MatchString(tenant) || !safeName.MatchString(name) {
		return fmt.Errorf("statefs: resource %q of tenant %q: bad name", name, tenant)
	}
	src, gen, err := s.ensure(tenant, name, sizeMB)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	dst, want := filepath.Join(dir, name), tenant+"/"+name
	s.amu.Lock()
	defer s.amu.Unlock()
	// A directory Release took back is not a place to attach to any more:
	// its instance is going, and its directory with it.
	if ok, err := mounted(dir); err != nil || !ok {
		return fmt.Errorf("statefs: %s is not an instance's state directory (released?): %v", dir, err)
	}
	if ok, err := mounted(dst); err != nil {
		return err
	} else if ok {
		b := s.attached[dst]
		if b.res != want {
			return fmt.Errorf("statefs: %s holds another resource than %s", dst, want)
		}
		if b.gen == gen {
			return nil
		}
		// Bound from a weed mount that died: bind the new one instead.
		if err := unix.Unmount(dst, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("statefs: unbind the dead %s: %w", dst, err)
		}
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("statefs: %w", err)
	}
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("statefs: attach %s: %w", want, err)
	}
	s.attached[dst] = binding{res: want, gen: gen}
	return nil
}

// ensure creates and mounts the resource's file system if needed and
// returns where it is mounted, and which mount that is.
func (s *Store) ensure(tenant, name string, sizeMB int64) (string, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dir := filepath.Join(s.root, tenant)
	mnt, img := filepath.Join(dir, name), filepath.Join(dir, name+".img")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, fmt.Errorf("statefs: %w", err)
	}
	if s.opt.Filer != "" {
		gen, err := s.mountNetworked(tenant, name, sizeMB, mnt)
		return mnt, gen, err
	}
	if ok, err := mounted(mnt); err != nil || ok {
		return mnt, 0, err
	}
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		return "", 0, fmt.Errorf("statefs: %w", err)
	}
	if _, err := os.Stat(img); errors.Is(err, os.ErrNotExist) {
		if sizeMB < 16 {
			sizeMB = 16 // ext4's smallest useful size
		}
		if err := makeImage(img, sizeMB); err != nil {
			return "", 0, err
		}
	} else if err != nil {
		return "", 0, fmt.Errorf("statefs: %w", err)
	}
	if out, err := exec.Command("mount", "-o", "loop,nosuid,nodev", img, mnt).CombinedOutput(); err != nil {
		return "", 0, fmt.Errorf("statefs: mount %s: %v: %s", img, err, strings.TrimSpace(string(out)))
	}
	// Every container of the tenant writes here, each as its own uid.
	if err := os.Chmod(mnt, 0o777); err != nil {
		return "", 0, fmt.Errorf("statefs: %w", err)
	}
	return mnt, 0, nil
}

func makeImage(img string, sizeMB int64) error {
	tmp := img + ".new"
	_ = os.Remove(tmp) // what a crash during a previous creation left
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("statefs: %w", err)
	}
	// Allocated, not sparse: a host disk that fills must not take the
	// tenants' file systems with it.
	err = unix.Fallocate(int(f.Fd()), 0, 0, sizeMB<<20)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("statefs: %w", err)
	}
	// -m 0: no blocks reserved for root, the quota is the tenant's.
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "root_owner=0:0", tmp).CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("statefs: mkfs.ext4: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, img); err != nil {
		return fmt.Errorf("statefs: %w", err)
	}
	return nil
}

// Release unmounts every resource attached under dir, then dir itself.
// After it, removing dir cannot touch a resource's data.
func (s *Store) Release(dir string) error {
	s.amu.Lock()
	defer s.amu.Unlock()
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	} else if errors.Is(err, os.ErrNotExist) {
		return nil // nothing there, nothing mounted there
	}
	for p := range s.attached {
		if p == dir || strings.HasPrefix(p, dir+"/") {
			delete(s.attached, p)
		}
	}
	ms, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("statefs: unmount %s: %w", m, err))
		}
	}
	if left, err := mountsUnder(dir); err != nil || len(left) > 0 {
		errs = append(errs, fmt.Errorf("statefs: %s still has mounts (%v)", dir, err))
	}
	return errors.Join(errs...)
}

// Close unmounts every resource file system of the store (their loop
// devices or weed mounts go with them).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for mnt := range s.weed { // each weed mount writes what it holds, then exits
		errs = append(errs, s.unmountNetworked(mnt))
	}
	return errors.Join(append(errs, s.Release(s.root))...)
}

// mounted reports whether path is a mount point.
func mounted(path string) (bool, error) {
	ms, err := mountsUnder(path)
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if m == path {
			return true, nil
		}
	}
	return false, nil
}

// mountsUnder lists the mount points at or under dir, deepest first. An
// error means the list is unknown: nothing may be removed on its word.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("statefs: mount table: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("statefs: mount table: %w", err)
	}
	// Deepest first; a path mounted twice appears twice (unmounted twice).
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// unescape decodes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var n int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &n); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
