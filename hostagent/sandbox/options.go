package sandbox

import (
	"fmt"
	"strings"
	"time"
)

// Defaults.
const (
	// DefaultRuntime is the containerd runtime (shim) instances run under.
	DefaultRuntime = "io.containerd.runc.v2"
	// DefaultGrace is how long Destroy waits after SIGTERM before SIGKILL.
	DefaultGrace = 2 * time.Second
	// DefaultHostID is the host uid and gid the instance's root maps to.
	DefaultHostID = 100000
	// DefaultIDRange is how many ids the user namespace maps.
	DefaultIDRange = 65536
	// DefaultPidsLimit is an instance's pids.max when InstanceSpec leaves it 0.
	DefaultPidsLimit = 256
	// DefaultSnapshotter is the snapshotter the instance image is unpacked for.
	DefaultSnapshotter = "overlayfs"
	// DefaultTmpSize is the size of the instance's /tmp tmpfs.
	DefaultTmpSize = "64m"

	// LabelRole marks every container this package creates; List only
	// returns containers that carry it (and the runtime's labels).
	LabelRole = "ember.role"
	// RoleInstance is LabelRole's value.
	RoleInstance = "instance"
	// LabelClass carries InstanceSpec.Class.
	LabelClass = "ember.class"

	// CgroupParent is the cgroup (in every hierarchy) instances live under.
	CgroupParent = "/ember"

	// MBPerVCPU is the memory that buys one full vCPU of CFS quota, as on
	// AWS Lambda; MinVCPU is the floor of a function's quota.
	MBPerVCPU = 1769
	MinVCPU   = 0.1
	// InitVCPU is the instance's CPU headroom above its function's quota,
	// for ember-init's own work (Runtime API, log capture), so that platform
	// overhead is not charged to the function's budget.
	InitVCPU = 0.2
	// CFSPeriodUs is the CFS period in microseconds. A short period bounds
	// how long a throttled function stalls: with the kernel's default of
	// 100 ms, a 0.1 vCPU function that spends its quota waits up to 90 ms.
	CFSPeriodUs = 10000
)

// FunctionVCPU is the CPU a function of memoryMB gets: memoryMB/MBPerVCPU,
// at least MinVCPU. The host agent sets it as the CFS quota of the
// function's own cgroup.
func FunctionVCPU(memoryMB int64) float64 {
	return max(float64(memoryMB)/MBPerVCPU, MinVCPU)
}

// QuotaUs is the CFS quota of vcpu per CFSPeriodUs.
func QuotaUs(vcpu float64) int64 { return int64(vcpu * CFSPeriodUs) }

// Option configures a Runtime.
type Option func(*Runtime) error

// WithUserNamespace maps the instance's uids and gids 0..size-1 to
// hostID..hostID+size-1. Default: on, 100000, 65536.
func WithUserNamespace(hostID, size uint32) Option {
	return func(r *Runtime) error {
		if hostID == 0 || size == 0 {
			return fmt.Errorf("user namespace host id %d size %d: both must be positive", hostID, size)
		}
		r.userns, r.hostID, r.idRange = true, hostID, size
		return nil
	}
}

// WithoutUserNamespace runs instances in the host's user namespace. Their
// capabilities (CAP_SYS_ADMIN among them) are then real host capabilities:
// only for measurements and hosts where the instance is a microVM anyway.
func WithoutUserNamespace() Option {
	return func(r *Runtime) error {
		r.userns, r.hostID, r.idRange = false, 0, 0
		return nil
	}
}

// WithRuntime sets the containerd runtime name. Default: io.containerd.runc.v2.
func WithRuntime(name string) Option {
	return func(r *Runtime) error {
		if name == "" {
			return fmt.Errorf("runtime name must not be empty")
		}
		r.runtime = name
		return nil
	}
}

// WithGrace sets how long Destroy waits between SIGTERM and SIGKILL.
// Default: 2s. Zero sends SIGKILL at once.
func WithGrace(d time.Duration) Option {
	return func(r *Runtime) error {
		if d < 0 {
			return fmt.Errorf("grace %v must not be negative", d)
		}
		r.grace = d
		return nil
	}
}

// WithLabels adds container labels (e.g. ember.agent=<id>) to every
// instance. List returns only instances carrying all of them, so an agent
// finds its own instances after a crash and no one else's.
func WithLabels(labels map[string]string) Option {
	return func(r *Runtime) error {
		for k, v := range labels {
			if k == "" || k == LabelRole || k == LabelClass {
				return fmt.Errorf("label %q is empty or reserved", k)
			}
			r.labels[k] = v
		}
		return nil
	}
}

// WithSnapshotter sets the snapshotter. Default: overlayfs.
func WithSnapshotter(name string) Option {
	return func(r *Runtime) error {
		if name == "" {
			return fmt.Errorf("snapshotter must not be empty")
		}
		r.snapshotter = name
		return nil
	}
}

// InstanceSpec describes one instance to start.
type InstanceSpec struct {
	// ID is unique on the host, e.g. "<agent>-m256-<random>"; it is also
	// the containerd container id, the hostname and the cgroup name.
	ID string
	// Class is the resource class, e.g. "m256"; recorded as a label.
	Class string
	// MemoryMB is the instance cgroup's memory limit (and memory+swap
	// limit where swap accounting exists). Required.
	MemoryMB int64
	// CPUShares is cpu.shares. Default: 1024 * MemoryMB / MBPerVCPU, at
	// least 2. The CFS quota is always MemoryMB / MBPerVCPU vCPUs, at
	// least MinVCPU.
	CPUShares uint64
	// PidsLimit is pids.max. Default: 256.
	PidsLimit int64
	// MilliCPU, when set, is the instance's CFS quota in thousandths of a
	// vCPU (a sub-pool's constraint); 0 derives it from MemoryMB.
	MilliCPU int64
	// BootMilliCPU, when above that quota, is the quota the instance boots
	// with (runc's set-up inside it, ember-init's start): the caller puts
	// the instance's own back (cgroup.SetCPUQuota) once ember-init answers.
	BootMilliCPU int64
	// TmpMB, when set, is the size of each container's /tmp (ember-init's
	// --tmp-size-mb); 0 keeps ember-init's default.
	TmpMB int64
	// OrphanTimeout, when set, ends the instance once no agent has been
	// connected to its ember-init for that long (ember-init's
	// --orphan-timeout): instances an agent left running at a clean stop
	// for its next start to reattach do not outlive an agent that never
	// comes back.
	OrphanTimeout time.Duration
	// StateDir, if set, is a host mount point with shared propagation,
	// bound at initproto.StateDir as its slave: resources the agent mounts
	// under it later appear in the running instance.
	StateDir string
	// SocketDir is a host directory bind-mounted read-write at
	// initproto.SocketDir; Create makes it and hands it to the instance's
	// mapped root. Required. runc mounts from inside the user namespace,
	// so every ancestor of SocketDir and CodeDir (and containerd's state
	// directory) must be searchable by others (o+x).
	SocketDir string
	// CodeDir is a host directory bind-mounted read-only at
	// initproto.CodeMount; Create makes it if missing. Required.
	CodeDir string
	// LogPath receives the instance's stdout and stderr. Required.
	LogPath string
	// LogDir, if set, is a host directory bind-mounted read-write at
	// initproto.LogDir, where ember-init keeps the functions' output.
	LogDir string
	// ResolvConf, if set, is a host file bind-mounted read-only over the
	// image's /etc/resolv.conf.
	ResolvConf string
	// Env is extra environment for ember-init, "KEY=value" each.
	Env []string
	// HostUID is the host uid (and gid) the instance's root maps to; its
	// user namespace maps IDRange ids from there. Give each instance a
	// range of its own, so that no two instances share a host uid.
	// Default: the runtime's (WithUserNamespace).
	HostUID uint32
}

// Validate checks the spec and fills defaults.
func (s *InstanceSpec) Validate() error {
	switch {
	case s.ID == "" || strings.ContainsAny(s.ID, "/ \t\n") || len(s.ID) > 64:
		return fmt.Errorf("instance id %q: must be 1 to 64 characters without '/' or spaces", s.ID)
	case s.MemoryMB <= 0:
		return fmt.Errorf("instance %s: memory %d MB must be positive", s.ID, s.MemoryMB)
	case s.SocketDir == "" || s.CodeDir == "" || s.LogPath == "":
		return fmt.Errorf("instance %s: socket dir, code dir and log path are required", s.ID)
	case s.PidsLimit < 0:
		return fmt.Errorf("instance %s: pids limit %d must not be negative", s.ID, s.PidsLimit)
	case s.MilliCPU < 0 || s.BootMilliCPU < 0 || s.TmpMB < 0:
		return fmt.Errorf("instance %s: CPU and /tmp size must not be negative", s.ID)
	}
	if s.PidsLimit == 0 {
		s.PidsLimit = DefaultPidsLimit
	}
	if s.CPUShares == 0 {
		s.CPUShares = max(uint64(s.MemoryMB)*1024/MBPerVCPU, 2)
	}
	return nil
}

// bootQuotaUs is the CFS quota an instance boots with: its own
// (InstanceVCPU), or BootMilliCPU's when more.
func (s *InstanceSpec) bootQuotaUs() int64 {
	return max(QuotaUs(InstanceVCPU(s.MemoryMB, s.MilliCPU)), QuotaUs(float64(s.BootMilliCPU)/1000))
}

// InstanceVCPU is the CPU bandwidth of a whole instance: milliCPU when set
// (a sub-pool's), else its function's CPU (memoryMB) plus InitVCPU.
func InstanceVCPU(memoryMB, milliCPU int64) float64 {
	if milliCPU > 0 {
		return float64(milliCPU) / 1000
	}
	return FunctionVCPU(memoryMB) + InitVCPU
}
