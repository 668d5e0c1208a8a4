package statefs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options choose where a Store keeps its resources.
type Options struct {
	// Filer is a SeaweedFS filer, host:port of its HTTP listener (its gRPC
	// listener is that port + 10000), that holds every host's resources.
	// Empty: each resource is an image file on this host.
	Filer string
	// Weed is the weed binary that mounts resources from Filer. Default:
	// "weed" from PATH.
	Weed string
}

// mountTimeout bounds how long a new weed mount may take to appear.
const mountTimeout = 30 * time.Second

// fsDir is where a tenant's resources live on the filer.
const fsDir = "/ember/state"

// weedMount is one resource mounted from the filer by a weed process.
type weedMount struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	gen    uint64        // which mount of the store this is (binds of an older one are dead)
}

// collection names the resource's SeaweedFS collection, which holds its
// data and is what its quota counts: one per resource, derived so that
// no two resources share one, whatever their tenants' names.
func collection(tenant, name string) string {
	h := sha256.Sum256([]byte(tenant + "/" + name))
	return "ember" + hex.EncodeToString(h[:8])
}

// mountNetworked mounts the tenant's resource from the filer at mnt with
// a weed mount process of the store's, unless one serves it already (s.mu
// held), and returns the mount's generation.
func (s *Store) mountNetworked(tenant, name string, sizeMB int64, mnt string) (uint64, error) {
	if m, ok := s.weed[mnt]; ok {
		select {
		case <-m.exited:
			delete(s.weed, mnt) // its process died: mount again
		default:
			if ok, err := mounted(mnt); err != nil || ok {
				return m.gen, err
			}
		}
	}
	// A mount no process of this store serves (an agent that restarted, a
	// weed that died) is a dead end: "transport endpoint is not connected".
	if ok, err := mounted(mnt); err != nil {
		return 0, err
	} else if ok {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			return 0, fmt.Errorf("statefs: unmount the stale %s: %w", mnt, err)
		}
	}
	if err := os.MkdirAll(mnt, 0o777); err != nil {
		return 0, fmt.Errorf("statefs: %w", err)
	}
	// The mount root's mode is the directory's: every container of the
	// tenant writes there, each as its own uid.
	if err := os.Chmod(mnt, 0o777); err != nil {
		return 0, fmt.Errorf("statefs: %w", err)
	}
	// Its socket, cache and output under short names of the store's own
	// (a unix socket's path has at most 107 bytes).
	coll := collection(tenant, name)
	base := filepath.Join(s.root, ".weed", coll)
	if err := os.MkdirAll(base+".cache", 0o700); err != nil {
		return 0, fmt.Errorf("statefs: %w", err)
	}
	// Its output goes to a file, not a pipe: weed must outlive an agent
	// killed without stopping (a write to a closed pipe would kill it).
	// Appended: the output of a weed that died says why.
	out, err := os.OpenFile(base+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("statefs: %w", err)
	}
	defer out.Close()
	if sizeMB < 1 {
		sizeMB = 1
	}
	cmd := exec.Command(s.opt.Weed, "mount",
		"-filer="+s.opt.Filer,
		"-filer.path="+fsDir+"/"+tenant+"/"+name,
		"-dir="+mnt,
		"-collection="+coll,
		"-collectionQuotaMB="+strconv.FormatInt(sizeMB, 10),
		// The quota counts the data written, not its replicas.
		"-df.logical",
		// Locks and writers coordinated across every host's mounts.
		"-dlm",
		"-allowOthers=true", "-defaultPermissions=true", "-umask=000",
		"-cacheDir="+base+".cache", "-cacheCapacityMB=0",
		// Lookups in a directory that had entries when this host first
		// listed it go to the filer, not to a local copy that another
		// host's changes reach later.
		"-cacheDirMaxEntries=1",
		"-localSocket="+base+".sock",
		"-volumeName=ember-"+tenant+"-"+name,
	)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: a terminal's signals are the agent's. An
	// agent killed without Close leaves it serving; the next agent finds
	// the mount is not its own and mounts again (the old weed exits when
	// its mount goes).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("statefs: start %s mount: %w", s.opt.Weed, err)
	}
	s.gen++
	m := &weedMount{cmd: cmd, exited: make(chan struct{}), gen: s.gen}
	go func() { _ = cmd.Wait(); close(m.exited) }()
	if err := waitMounted(mnt, m.exited, mountTimeout); err != nil {
		_ = cmd.Process.Kill()
		<-m.exited
		_ = unix.Unmount(mnt, unix.MNT_DETACH)
		log, _ := os.ReadFile(base + ".log")
		return 0, fmt.Errorf("statefs: mount %s/%s from %s: %w: %s", tenant, name, s.opt.Filer, err, tailOf(string(log)))
	}
	// The mode the mount root shows is the filer's entry's once another
	// host's weed has changed the directory (a file made or removed there):
	// give the entry the mode every container needs, or a container's
	// uid is refused in its own resource now and then.
	if err := os.Chmod(mnt, 0o777); err != nil {
		_ = cmd.Process.Kill()
		<-m.exited
		_ = unix.Unmount(mnt, unix.MNT_DETACH)
		return 0, fmt.Errorf("statefs: mode of %s/%s: %w", tenant, name, err)
	}
	s.weed[mnt] = m
	return m.gen, nil
}

// waitMounted waits until mnt is a mount point, for the mount table to
// change (poll on /proc/self/mountinfo wakes on every mount and unmount),
// until exited is closed or timeout.
func waitMounted(mnt string, exited <-chan struct{}, timeout time.Duration) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	for {
		if ok, err := mounted(mnt); err != nil || ok {
			return err
		}
		select {
		case <-exited:
			return errors.New("weed mount exited")
		default:
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("not mounted after %s", timeout)
		}
		// The table changed since it was last read: POLLPRI. A 100 ms
		// bound notices the process exiting without a table change.
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLPRI}}
		if _, err := unix.Poll(fds, int(min(left, 100*time.Millisecond)/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if _, err := f.Seek(0, 0); err != nil {
			return err
		}
		if _, err := f.Read(make([]byte, 4096)); err != nil {
			return err
		}
	}
}

// unmountNetworked unmounts mnt and stops its weed process (s.mu held, or
// the store closing).
func (s *Store) unmountNetworked(mnt string) error {
	m, ok := s.weed[mnt]
	if !ok {
		return nil
	}
	delete(s.weed, mnt)
	err := unix.Unmount(mnt, 0)
	if err != nil && !errors.Is(err, unix.EINVAL) {
		// Busy: detach it; the kernel finishes when the last user goes.
		err = unix.Unmount(mnt, unix.MNT_DETACH)
	}
	if errors.Is(err, unix.EINVAL) {
		err = nil
	}
	// weed mount writes what it holds and exits when its mount goes.
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(5 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
	if err != nil {
		return fmt.Errorf("statefs: unmount %s: %w", mnt, err)
	}
	return nil
}

// checkFiler fails early, with a clear error, when the filer is not a
// host:port, weed is missing or the kernel has no FUSE.
func checkFiler(opt Options) error {
	host, port, err := net.SplitHostPort(opt.Filer)
	if err != nil || host == "" {
		return fmt.Errorf("statefs: filer %q: want host:port", opt.Filer)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("statefs: filer %q: bad port", opt.Filer)
	}
	if _, err := exec.LookPath(opt.Weed); err != nil {
		return fmt.Errorf("statefs: %s (SeaweedFS, `deploy/setup.sh weed`): %w", opt.Weed, err)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("statefs: SeaweedFS mounts need FUSE: %w", err)
	}
	return nil
}

// tailOf is the last lines of a process's output.
func tailOf(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return strings.Join(lines, "\n")
}
