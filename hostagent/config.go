package hostagent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/network"
	"github.com/ember-run/ember/hostagent/statefs"
)

// Config configures an Agent. Zero fields take the documented defaults.
type Config struct {
	// AgentID names the agent in Redis. Default: the host name.
	AgentID string
	// ListenAddr is the gRPC dispatch listener (host:port). Default:
	// "127.0.0.1:7947".
	ListenAddr string
	// AdvertiseAddr is the address schedulers dial, registered in Redis.
	// Default: the listener's actual address.
	AdvertiseAddr string
	// StateDir holds per-instance directories,
	// <StateDir>/instances/<id>/{sock,code,log}, and the packages
	// extracted once per host, <StateDir>/codes. Default: "/var/lib/ember/agent".
	StateDir string
	// CodeCacheMB bounds the disk space of the packages extracted under
	// <StateDir>/codes; beyond it the least recently used are removed
	// (instances keep their copies). Default: 4096.
	CodeCacheMB int64

	// Pool is the warming pool's target size per class (class names from
	// pool.ClassName). Default: {m128: 4, m256: 2, m512: 1, m1024: 1}.
	Pool map[string]int
	// MaxInstances bounds the instances on this host, warm, active and
	// starting. Default: 32.
	MaxInstances int
	// Capacity is what instances may reserve on this host, in memory and
	// CPU; the agent never starts an instance beyond it. Default: the
	// host's memory less 1 GiB (at least 1 GiB), and its CPUs.
	Capacity pool.Resources
	// StartConcurrency bounds instance starts in flight. Default: 2.
	StartConcurrency int
	// InstanceStartTimeout bounds one instance start, create to Hello.
	// Default: 30s.
	InstanceStartTimeout time.Duration

	// ContainerKeepAlive: a container idle that long is stopped. Default: 10m.
	ContainerKeepAlive time.Duration
	// InstanceKeepAlive: an instance assigned to a tenant and idle that long
	// is retired and destroyed. Default: 15m.
	InstanceKeepAlive time.Duration
	// RoomMinIdle: on a full host, a scheduler's demand for an instance
	// retires instances idle at least that long to make room (room.go);
	// one just started or used for another waiter is left alone.
	// Default: 1s.
	RoomMinIdle time.Duration
	// CRIU is a CRIU binary (4.1 or later, with docs/spikes/criu's patch;
	// `deploy/setup.sh criu` builds it): a parked invocation that still
	// waits after CheckpointAfter is checkpointed, giving its memory back
	// (checkpoint.go). "" keeps parked invocations frozen.
	CRIU string
	// CheckpointAfter: how long a parked invocation stays frozen before it
	// is checkpointed. Default: 1s.
	CheckpointAfter time.Duration
	// MaxContainersPerInstance bounds the live containers (function versions)
	// on an instance; the least recently used is stopped first. Default: 4.
	MaxContainersPerInstance int

	// HeartbeatInterval is how often the agent renews its Redis key.
	// Default: 2s.
	HeartbeatInterval time.Duration
	// HeartbeatTTL is the key's lifetime; past it, schedulers drop this
	// agent's instances. Default: 10s. Must exceed HeartbeatInterval.
	HeartbeatTTL time.Duration

	// CPUSharesPerGB sets an instance's (and a container's) CPU shares in
	// proportion to its memory, as Lambda does. Default: 1024.
	CPUSharesPerGB uint64
	// InstancesCPUShares is the CPU weight (cpu.shares) of all instances
	// together, in the cgroup runc puts them under (sandbox.CgroupParent),
	// against the host's other processes: a cgroup, or a task outside one,
	// weighs 1024. When the host is short of CPU, the functions that
	// invocations wait on run first; each instance stays capped by its own
	// CFS quota. Set by NewContainerd. Default: DefaultInstancesCPUShares.
	InstancesCPUShares uint64
	// InitCPUBoost is the CPU, in vCPUs, a container may use while it
	// starts when that is more than its function's share: from the moment
	// its package and cgroups are ready until its runtime first asks for an
	// invocation (GET /runtime/invocation/next), at most InitCPUBoostFor.
	// The container's CFS quota and its instance's (with sandbox.InitVCPU
	// on top) are lifted to it and put back afterwards. Instances of fixed
	// classes boot with it too, until ember-init answers (bounded by
	// InstanceStartTimeout; only Ember's code runs then). A quota is a
	// ceiling, not a share: when the host is short of CPU, instances still
	// share it by weight.
	// Default: 0, off (the commands' --init-cpu-boost defaults to
	// DefaultInitCPUBoost).
	InitCPUBoost float64
	// InitCPUBoostFor bounds one boost. Default: 1s.
	InitCPUBoostFor time.Duration
	// InstancePidsLimit bounds the processes of one instance. Default: 1024.
	InstancePidsLimit int64
	// ContainerPidsLimit bounds the processes of one container. Default: 256.
	ContainerPidsLimit int64
	// MappedRootUID is the first host uid of instances: instance n (its
	// slot, the lowest free) maps its root to MappedRootUID + n*UIDRange,
	// and its child cgroups and socket directory are owned by that uid, so
	// no two instances share a host uid. Agents sharing a kernel must be
	// given disjoint ranges (MaxInstances*UIDRange uids each).
	// Default: 100000.
	MappedRootUID int
	// UIDRange is how many uids an instance's user namespace maps.
	// Default: 65536 (NewContainerd takes the runtime's).
	UIDRange int

	// Network configures egress for containers that ask for it (bridge,
	// subnet, allowed private prefixes); its StateDir defaults to
	// StateDir/network. NewContainerd builds the network from it unless
	// NoNetwork is set.
	Network network.Config
	// NoNetwork: containers get their own loopback only, whatever they ask.
	NoNetwork bool
	// LogAllow are prefixes otherwise refused (loopback, private networks,
	// link-local: logrelay.Policy) where tenants' logging services may be
	// reached, e.g. a collector on the host's network.
	LogAllow []netip.Prefix
	// State says where tenants' state resources live: in image files on
	// this host (the zero value) or on a SeaweedFS filer every host mounts
	// (statefs.Options.Filer).
	State statefs.Options
	// StopGrace is the SIGTERM-to-SIGKILL grace when a container is stopped.
	// Default: 2s.
	StopGrace time.Duration
	// ShutdownTimeout bounds the drain of in-flight dispatches and the
	// destruction of instances at shutdown. Default: 30s.
	ShutdownTimeout time.Duration
	// KeepInstances leaves idle instances running at a clean stop, with
	// their containers, for the next start of the agent (same AgentID and
	// StateDir) to reattach: a restart keeps the pool warm. Default: false
	// (every instance is destroyed; the commands' --keep-instances
	// defaults to true).
	KeepInstances bool
	// OrphanTimeout ends an instance whose ember-init has had no agent
	// connected for that long (a stopped agent that never came back).
	// Default: 15m.
	OrphanTimeout time.Duration

	// Accounting says how per-invocation usage is measured:
	// AccountingEBPF (network by eBPF, CPU and memory from cgroups; without
	// network where eBPF cannot load), AccountingCgroup or AccountingOff.
	// Default: AccountingEBPF.
	Accounting string
}

// Defaults.
const (
	DefaultListenAddr   = "127.0.0.1:7947"
	DefaultStateDir     = "/var/lib/ember/agent"
	DefaultMaxInstances = 32
	DefaultCodeCacheMB  = 4096
	// DefaultInstancesCPUShares is eight times a default cgroup's weight:
	// at 1,000 events/s on a saturated 2-core host, event-to-start p99
	// went from 6-39 ms (1024) to under 6.25 ms (docs/architecture.md).
	DefaultInstancesCPUShares = 8192
	// DefaultInitCPUBoost is one vCPU: a 1024 MB function's start (a pool
	// hit) was no longer throttled, and two were no faster on a 2-core host.
	DefaultInitCPUBoost = 1.0

	// maxInitCPUBoost and maxInitCPUBoostFor bound the settings: a boost is
	// for a start, not a way out of the function's quota.
	maxInitCPUBoost    = 256
	maxInitCPUBoostFor = time.Minute
)

// DefaultPoolSpec is the default warming pool target in ParsePool's form:
// four of the smallest class (one per partition of a default topic) and
// fewer of the larger ones.
const DefaultPoolSpec = "m128=4,m256=2,m512=1,m1024=1"

// DefaultPool is the default warming pool target.
func DefaultPool() map[string]int {
	return map[string]int{"m128": 4, "m256": 2, "m512": 1, "m1024": 1} // == DefaultPoolSpec (tested)
}

func (c *Config) setDefaults() {
	if c.AgentID == "" {
		if h, err := os.Hostname(); err == nil {
			c.AgentID = h
		}
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if c.CodeCacheMB == 0 {
		c.CodeCacheMB = DefaultCodeCacheMB
	}
	if c.Pool == nil {
		c.Pool = DefaultPool()
	}
	if c.Capacity.MemoryMB == 0 {
		c.Capacity.MemoryMB = max(hostMemoryMB()-1024, 1024)
	}
	if c.Capacity.MilliCPU == 0 {
		c.Capacity.MilliCPU = int64(runtime.NumCPU()) * 1000
	}
	if c.MaxInstances == 0 {
		c.MaxInstances = DefaultMaxInstances
	}
	if c.StartConcurrency == 0 {
		c.StartConcurrency = 2
	}
	if c.InstanceStartTimeout == 0 {
		c.InstanceStartTimeout = 30 * time.Second
	}
	if c.ContainerKeepAlive == 0 {
		c.ContainerKeepAlive = 10 * time.Minute
	}
	if c.InstanceKeepAlive == 0 {
		c.InstanceKeepAlive = 15 * time.Minute
	}
	if c.RoomMinIdle == 0 {
		c.RoomMinIdle = time.Second
	}
	if c.CheckpointAfter == 0 {
		c.CheckpointAfter = time.Second
	}
	if c.MaxContainersPerInstance == 0 {
		c.MaxContainersPerInstance = 4
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = 2 * time.Second
	}
	if c.HeartbeatTTL == 0 {
		c.HeartbeatTTL = 10 * time.Second
	}
	if c.CPUSharesPerGB == 0 {
		c.CPUSharesPerGB = 1024
	}
	if c.InstancesCPUShares == 0 {
		c.InstancesCPUShares = DefaultInstancesCPUShares
	}
	if c.InitCPUBoostFor == 0 {
		c.InitCPUBoostFor = time.Second
	}
	if c.InstancePidsLimit == 0 {
		c.InstancePidsLimit = 1024
	}
	if c.ContainerPidsLimit == 0 {
		c.ContainerPidsLimit = 256
	}
	if c.MappedRootUID == 0 {
		c.MappedRootUID = 100000
	}
	if c.UIDRange == 0 {
		c.UIDRange = 65536
	}
	if c.Network.StateDir == "" && c.StateDir != "" {
		c.Network.StateDir = filepath.Join(c.StateDir, "network")
	}
	if c.StopGrace == 0 {
		c.StopGrace = 2 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.OrphanTimeout == 0 {
		c.OrphanTimeout = 15 * time.Minute
	}
	if c.Accounting == "" {
		c.Accounting = AccountingEBPF
	}
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	c.setDefaults()
	return c
}

// Validate reports the first invalid field, after defaults are applied.
func (c Config) Validate() error {
	c.setDefaults()
	switch {
	case c.AgentID == "":
		return errors.New("hostagent: AgentID is required (no host name)")
	case !filepath.IsAbs(c.StateDir):
		return fmt.Errorf("hostagent: StateDir %q must be absolute", c.StateDir)
	case c.MaxInstances < 0 || c.StartConcurrency < 0 || c.MaxContainersPerInstance < 0:
		return errors.New("hostagent: MaxInstances, StartConcurrency and MaxContainersPerInstance must be positive")
	case c.InstanceStartTimeout < 0 || c.ContainerKeepAlive < 0 || c.InstanceKeepAlive < 0 || c.RoomMinIdle < 0 ||
		c.HeartbeatInterval < 0 || c.StopGrace < 0 || c.ShutdownTimeout < 0 || c.OrphanTimeout < 0:
		return errors.New("hostagent: durations must be positive")
	case c.HeartbeatTTL <= c.HeartbeatInterval:
		return fmt.Errorf("hostagent: HeartbeatTTL %v must exceed HeartbeatInterval %v", c.HeartbeatTTL, c.HeartbeatInterval)
	case c.InstancePidsLimit < 0 || c.ContainerPidsLimit < 0 || c.MappedRootUID < 0 || c.UIDRange < 0:
		return errors.New("hostagent: pids limits, MappedRootUID and UIDRange must not be negative")
	case int64(c.MappedRootUID)+int64(c.MaxInstances)*int64(c.UIDRange) > 1<<32-2:
		return fmt.Errorf("hostagent: MappedRootUID %d + MaxInstances %d * UIDRange %d passes the largest uid", c.MappedRootUID, c.MaxInstances, c.UIDRange)
	case c.Capacity.MemoryMB < 128 || c.Capacity.MilliCPU < 100:
		return fmt.Errorf("hostagent: Capacity %d MB, %d mCPU: want at least 128 MB and 100 mCPU", c.Capacity.MemoryMB, c.Capacity.MilliCPU)
	case c.CodeCacheMB < 0 || c.CodeCacheMB > 1<<30:
		return fmt.Errorf("hostagent: CodeCacheMB %d must be positive and at most 2^30", c.CodeCacheMB)
	case c.InstancesCPUShares < cgroup.MinShares || c.InstancesCPUShares > cgroup.MaxShares:
		return fmt.Errorf("hostagent: InstancesCPUShares %d must be %d to %d (the kernel's cpu.shares range)",
			c.InstancesCPUShares, cgroup.MinShares, cgroup.MaxShares)
	case !(c.InitCPUBoost >= 0 && c.InitCPUBoost <= maxInitCPUBoost) || c.InitCPUBoostFor < 0 || c.InitCPUBoostFor > maxInitCPUBoostFor:
		return fmt.Errorf("hostagent: InitCPUBoost %g must be 0 to %d vCPUs and InitCPUBoostFor %v at most %v",
			c.InitCPUBoost, maxInitCPUBoost, c.InitCPUBoostFor, maxInitCPUBoostFor)
	case c.Accounting != AccountingEBPF && c.Accounting != AccountingCgroup && c.Accounting != AccountingOff:
		return fmt.Errorf("hostagent: Accounting %q must be %q, %q or %q", c.Accounting, AccountingEBPF, AccountingCgroup, AccountingOff)
	}
	total := 0
	for class, n := range c.Pool {
		if _, err := pool.ClassMemory(class); err != nil {
			return fmt.Errorf("hostagent: Pool: %w", err)
		}
		if n < 0 {
			return fmt.Errorf("hostagent: Pool[%s] = %d must not be negative", class, n)
		}
		total += n
	}
	if total > c.MaxInstances {
		return fmt.Errorf("hostagent: the warming pool (%d instances) exceeds MaxInstances (%d)", total, c.MaxInstances)
	}
	var need pool.Resources
	for class, n := range c.Pool {
		r, _ := pool.FixedNeeds(class) // a bad class was refused above
		need = need.Add(pool.Resources{MemoryMB: r.MemoryMB * int64(n), MilliCPU: r.MilliCPU * int64(n)})
	}
	if !c.Capacity.Fits(need) {
		return fmt.Errorf("hostagent: the warming pool needs %d MB and %d mCPU; the host's capacity is %d MB and %d mCPU",
			need.MemoryMB, need.MilliCPU, c.Capacity.MemoryMB, c.Capacity.MilliCPU)
	}
	return nil
}

// hostMemoryMB is MemTotal from /proc/meminfo (0 if unreadable).
func hostMemoryMB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb >> 10
		}
	}
	return 0
}

// classes returns the pool's classes in a stable order, smallest first.
func (c *Config) classes() []string {
	out := make([]string, 0, len(c.Pool))
	for class := range c.Pool {
		out = append(out, class)
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := pool.ClassMemory(out[i])
		b, _ := pool.ClassMemory(out[j])
		return a < b || (a == b && out[i] < out[j])
	})
	return out
}

// cpuShares is the CPU weight of memoryMB.
func (c *Config) cpuShares(memoryMB int64) uint64 {
	s := uint64(memoryMB) * c.CPUSharesPerGB / 1024
	return max(s, 2) // the kernel's minimum
}

// ParsePool parses a warming pool target, "class=count,class=count", e.g.
// "m128=2,m256=1". An empty string is an empty pool.
func ParsePool(s string) (map[string]int, error) {
	out := map[string]int{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		class, n, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("pool %q: %q is not class=count", s, part)
		}
		if _, err := pool.ClassMemory(class); err != nil {
			return nil, fmt.Errorf("pool %q: %w", s, err)
		}
		v, err := strconv.Atoi(n)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("pool %q: %q: count must be a non-negative integer", s, part)
		}
		out[class] = v
	}
	return out, nil
}
