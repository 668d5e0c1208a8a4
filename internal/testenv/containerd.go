package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
)

// ContainerdDaemon is a private containerd with its own root, state and
// socket under a temporary directory. Its containers live in their own
// namespace, "ember-test-<pid>-<n>", because containerd still writes shim
// sockets and runc state under /run/containerd, shared with every other
// containerd on the host.
type ContainerdDaemon struct {
	// Client is connected to the daemon; Close closes it.
	Client *containerd.Client
	// Namespace is the containerd namespace reserved for this daemon's users.
	Namespace string
	// Address is the daemon's gRPC socket.
	Address string
	// Dir holds the daemon's config, root, state, socket and log.
	Dir string

	cmd    *exec.Cmd
	exited chan error
}

var daemonSeq atomic.Int64

// StartContainerd starts a private containerd and returns it once it answers.
// The caller must Close it; TestMain is the natural owner when the daemon is
// shared by a test binary.
func StartContainerd() (*ContainerdDaemon, error) { return StartContainerdIn("") }

// StartContainerdIn is StartContainerd inside the named network namespace
// ("": the caller's), as a host of a multi-host test runs it.
func StartContainerdIn(netns string) (*ContainerdDaemon, error) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return nil, fmt.Errorf("containerd not installed (run deploy/setup.sh install): %w", err)
	}
	dir, err := os.MkdirTemp("", "ember-ctrd-")
	if err != nil {
		return nil, err
	}
	// runc mounts an instance's rootfs from inside its user namespace: the
	// mapped root must be able to traverse the state directory.
	if err := os.Chmod(dir, 0o711); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	d := &ContainerdDaemon{
		Namespace: fmt.Sprintf("ember-test-%d-%d", os.Getpid(), daemonSeq.Add(1)),
		Address:   filepath.Join(dir, "containerd.sock"),
		Dir:       dir,
		exited:    make(chan error, 1),
	}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.Address, d.Address+".ttrpc", filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	defer logf.Close()
	d.cmd = exec.Command(bin, "--config", cfgPath)
	if netns != "" {
		// nsenter, not "ip netns exec": that remounts /sys, and runc then
		// finds no cgroup mounts.
		d.cmd = exec.Command("nsenter", "--net=/run/netns/"+netns, bin, "--config", cfgPath)
	}
	d.cmd.Stdout = logf
	d.cmd.Stderr = logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the thread that forked the daemon exits, not the
	// process: Go ends threads whose goroutine exits while locked to them
	// (tests that enter namespaces do that), and any thread may be one. So
	// fork from a thread that stays locked, and alive, until the daemon
	// exits. The goroutine is owned by Close, which waits on exited.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := d.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		d.exited <- d.cmd.Wait()
	}()
	if err := <-started; err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start containerd: %w", err)
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := d.connect(); err == nil {
			return d, nil
		} else if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			_ = d.Close()
			return nil, fmt.Errorf("containerd did not answer: %w\n%s", err, log)
		}
		select {
		case err := <-d.exited:
			d.exited <- err
			log, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			_ = d.Close()
			return nil, fmt.Errorf("containerd exited: %v\n%s", err, log)
		case <-time.After(20 * time.Millisecond): // polling a starting daemon
		}
	}
}

func (d *ContainerdDaemon) connect() error {
	if _, err := os.Stat(d.Address); err != nil {
		return err
	}
	client, err := containerd.New(d.Address, containerd.WithTimeout(2*time.Second),
		containerd.WithDefaultNamespace(d.Namespace))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := client.Version(ctx); err != nil {
		_ = client.Close()
		return err
	}
	d.Client = client
	return nil
}

// Close kills and deletes every task and container left in the daemon's
// namespace (so no shim outlives the daemon), stops the daemon and removes
// its directory.
func (d *ContainerdDaemon) Close() error {
	var errs []error
	if d.Client != nil {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), d.Namespace), 30*time.Second)
		errs = append(errs, cleanNamespace(ctx, d.Client))
		cancel()
		errs = append(errs, d.Client.Close())
	}
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	errs = append(errs, os.RemoveAll(d.Dir))
	return errors.Join(errs...)
}

// cleanNamespace kills and deletes every task and container in ctx's namespace.
func cleanNamespace(ctx context.Context, client *containerd.Client) error {
	containers, err := client.Containers(ctx)
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var errs []error
	for _, c := range containers {
		if task, err := c.Task(ctx, nil); err == nil {
			_ = task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll)
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete task %s: %w", c.ID(), err))
			}
		}
		if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete container %s: %w", c.ID(), err))
		}
	}
	return errors.Join(errs...)
}

// Containerd starts a private containerd for t and returns a client whose
// default namespace is the daemon's own, and that namespace. Everything is
// cleaned up and the daemon stopped when t ends. Tests that share one
// daemon per binary use StartContainerd from TestMain instead.
func Containerd(t testing.TB) (*containerd.Client, string) {
	t.Helper()
	d, err := StartContainerd()
	if err != nil {
		t.Fatalf("private containerd: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("stop private containerd: %v", err)
		}
	})
	return d.Client, d.Namespace
}
