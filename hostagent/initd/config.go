package initd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
)

// Config configures a Server. The zero value of every field but InstanceID
// means its documented default; paths default to the in-instance layout of
// initproto so that only tests need to set them.
type Config struct {
	// InstanceID is reported in Hello. Required.
	InstanceID string
	// Version is reported in Hello. Default: "dev".
	Version string

	// SocketDir is where the agent socket (initproto.SocketName) is created.
	// Default: initproto.SocketDir.
	SocketDir string
	// CodeMount holds one directory per function version; StartContainer.CodeDir
	// is resolved under it. Default: initproto.CodeMount.
	CodeMount string
	// StateDir holds the tenant's state resources the agent attached;
	// StartContainer.State dirs are resolved under it. Default:
	// initproto.StateDir.
	StateDir string
	// TaskDir is where a container sees its code, bind-mounted read-only in the
	// container's own mount namespace (created if missing). It is also
	// LAMBDA_TASK_ROOT and the container's working directory.
	// Default: initproto.TaskDir.
	TaskDir string
	// Bootstrap is the executable's name inside TaskDir. Default: "bootstrap".
	Bootstrap string
	// TmpDir gets a fresh tmpfs per container process; it is also HOME.
	// Default: "/tmp".
	TmpDir string
	// TmpSizeBytes bounds that tmpfs, and the container's /dev/shm.
	// Default: 64 MiB.
	TmpSizeBytes int64
	// ShmDir gets a fresh tmpfs per container process. Default: "/dev/shm".
	ShmDir string
	// LogDir is where the function output log is kept (see Config.Output);
	// containers do not see it. Default: "" (none).
	LogDir string
	// Hostname is the host name containers see. Default: "localhost".
	Hostname string
	// ShimBinary is started as each container's shim (hostagent/shim):
	// ember-init passes the image's ember-shim when it has one. Default:
	// "/proc/self/exe", this very executable, which must then run shim.Run
	// when shim.IsShim.
	ShimBinary string
	// UID is the first uid containers run as: each container gets its own,
	// the lowest free one from UID up (its gid is the same number).
	// Default: 1000.
	UID int

	// Region is exported as AWS_REGION and AWS_DEFAULT_REGION. Default: "local".
	Region string

	// DefaultTimeout bounds an Invoke whose DeadlineUnixMs is zero and whose
	// container has no TimeoutMs. Default: 3s (Lambda's default).
	DefaultTimeout time.Duration
	// StopGrace is used for a Stop with GraceMs zero and at shutdown.
	// Default: 2s.
	StopGrace time.Duration
	// MaxResponseBytes is the largest response a function may post.
	// Default: 6291556 (Lambda's 6 MB).
	MaxResponseBytes int64
	// LogRingBytes is the per-container output ring. Default: 64 KiB.
	LogRingBytes int
	// LogTailBytes is the most output returned in Result.LogTail.
	// Default: 4 KiB.
	LogTailBytes int
	// MaxInvocationLogBytes is the most output of one invocation (or of the
	// idle time between two) copied to Output; the rest is dropped,
	// counted in Result.LogTruncatedBytes and noted in the log tail.
	// Default: 1 MiB.
	MaxInvocationLogBytes int64

	// ReapAll makes the server reap every child of the process with
	// wait4(-1), as PID 1 must. It is only safe when nothing else in the
	// process waits for children (no os/exec Wait), so it is for the
	// ember-init binary, not for tests. Default: false (each container
	// process is waited for by pid).
	ReapAll bool

	// Output receives every line a container writes, prefixed with the
	// container id. Default: os.Stderr.
	Output io.Writer

	// OrphanTimeout ends the server (Run returns, its containers stopped)
	// once no agent has been connected for that long: an agent stopped
	// for good, never restarted to reattach, does not leave its instances
	// running forever. Zero: never.
	OrphanTimeout time.Duration
}

// MaxContainers bounds the containers of one instance (each has a uid of
// its own).
const MaxContainers = 1024

// hidden are the instance's directories that containers must not see.
func (c *Config) hidden() []string {
	out := []string{c.CodeMount, c.SocketDir, c.StateDir}
	if c.LogDir != "" {
		out = append(out, c.LogDir)
	}
	return out
}

// DefaultMaxInvocationLogBytes is Config.MaxInvocationLogBytes's default.
const DefaultMaxInvocationLogBytes = 1 << 20

// DefaultMaxResponseBytes is Lambda's synchronous response limit.
const DefaultMaxResponseBytes = 6291556

func (c *Config) setDefaults() {
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.SocketDir == "" {
		c.SocketDir = initproto.SocketDir
	}
	if c.CodeMount == "" {
		c.CodeMount = initproto.CodeMount
	}
	if c.StateDir == "" {
		c.StateDir = initproto.StateDir
	}
	if c.TaskDir == "" {
		c.TaskDir = initproto.TaskDir
	}
	if c.Bootstrap == "" {
		c.Bootstrap = "bootstrap"
	}
	if c.TmpDir == "" {
		c.TmpDir = "/tmp"
	}
	if c.TmpSizeBytes == 0 {
		c.TmpSizeBytes = 64 << 20
	}
	if c.UID == 0 {
		c.UID = 1000
	}
	if c.ShmDir == "" {
		c.ShmDir = "/dev/shm"
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.ShimBinary == "" {
		c.ShimBinary = "/proc/self/exe"
	}
	if c.Region == "" {
		c.Region = "local"
	}
	if c.DefaultTimeout == 0 {
		c.DefaultTimeout = 3 * time.Second
	}
	if c.StopGrace == 0 {
		c.StopGrace = 2 * time.Second
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.LogRingBytes == 0 {
		c.LogRingBytes = 64 << 10
	}
	if c.LogTailBytes == 0 {
		c.LogTailBytes = 4 << 10
	}
	if c.MaxInvocationLogBytes == 0 {
		c.MaxInvocationLogBytes = DefaultMaxInvocationLogBytes
	}
	if c.Output == nil {
		c.Output = os.Stderr
	}
}

// Validate reports the first invalid field, after defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	if c.InstanceID == "" {
		return errors.New("initd: InstanceID is required")
	}
	for name, p := range map[string]string{
		"SocketDir": c.SocketDir, "CodeMount": c.CodeMount,
		"TaskDir": c.TaskDir, "TmpDir": c.TmpDir,
	} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("initd: %s %q must be absolute", name, p)
		}
	}
	if c.Bootstrap != filepath.Base(c.Bootstrap) {
		return fmt.Errorf("initd: Bootstrap %q must be a file name", c.Bootstrap)
	}
	if c.UID < 1 || c.UID+MaxContainers > 65534 {
		return fmt.Errorf("initd: UID %d: containers need uids %d..%d below 65534", c.UID, c.UID, c.UID+MaxContainers)
	}
	switch {
	case c.TmpSizeBytes < 0:
		return errors.New("initd: TmpSizeBytes must not be negative")
	case c.DefaultTimeout < 0, c.StopGrace < 0:
		return errors.New("initd: durations must not be negative")
	case c.MaxResponseBytes < 0 || c.MaxResponseBytes > initproto.MaxFrame-64<<10:
		return fmt.Errorf("initd: MaxResponseBytes %d must be in [0, %d] to fit a Result frame", c.MaxResponseBytes, initproto.MaxFrame-64<<10)
	case c.LogTailBytes < 0 || c.LogRingBytes < c.LogTailBytes:
		return fmt.Errorf("initd: LogRingBytes (%d) must be at least LogTailBytes (%d)", c.LogRingBytes, c.LogTailBytes)
	}
	return nil
}
