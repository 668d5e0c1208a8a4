// Package agentflags is the command-line flags of a host agent, shared by
// emberd (which hosts one in-process) and ember-agent, so that both take
// the same names, defaults and help.
package agentflags

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/ember-run/ember/hostagent"
	"github.com/ember-run/ember/hostagent/network"
)

// Flags are the agent settings both commands take.
type Flags struct {
	pool                          string
	maxInstances, maxContainers   int
	containerKeepAlive, keepAlive time.Duration
	accounting                    string
	bridge, subnet                string
	allow, logAllow, dns          []string
	noNetwork                     bool
	uidBase                       int
	capacityMB                    int64
	capacityVCPU                  float64
	stateFiler, weed              string
	codeCacheMB                   int64
	instancesCPUShares            uint64
	initCPUBoost                  float64
	initCPUBoostFor               time.Duration
	keepInstances                 bool
	orphanTimeout                 time.Duration
	criu                          string
	checkpointAfter               time.Duration
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.pool, "pool", hostagent.DefaultPoolSpec, "warming pool target per class, class=count,...")
	fs.IntVar(&f.maxInstances, "max-instances", hostagent.DefaultMaxInstances, "most instances on this host")
	fs.Int64Var(&f.capacityMB, "capacity-memory", 0, "MB of memory instances may reserve on this host, never overcommitted (default: the host's memory less 1 GiB)")
	fs.Float64Var(&f.capacityVCPU, "capacity-vcpu", 0, "vCPUs instances may reserve on this host, never overcommitted (default: the host's CPUs)")
	fs.Uint64Var(&f.instancesCPUShares, "instances-cpu-shares", hostagent.DefaultInstancesCPUShares, "CPU weight of all instances together against the host's other processes (cpu.shares: a cgroup or a task outside one weighs 1024); each instance stays capped by its own quota")
	fs.Float64Var(&f.initCPUBoost, "init-cpu-boost", hostagent.DefaultInitCPUBoost, "vCPUs a container may use while it starts (until its runtime first asks for an invocation, at most --init-cpu-boost-for), and an instance while it boots, when more than their own share; 0 turns it off")
	fs.DurationVar(&f.initCPUBoostFor, "init-cpu-boost-for", time.Second, "longest CPU boost of one container start")
	fs.IntVar(&f.maxContainers, "max-containers-per-instance", 4, "most live function containers per instance (LRU)")
	fs.DurationVar(&f.containerKeepAlive, "container-keep-alive", 10*time.Minute, "stop a function container idle this long")
	fs.DurationVar(&f.keepAlive, "instance-keep-alive", 15*time.Minute, "retire a tenant's instance idle this long")
	fs.StringVar(&f.accounting, "accounting", hostagent.AccountingEBPF, "per-invocation usage: ebpf (falls back to cgroup), cgroup or off")
	fs.StringVar(&f.bridge, "bridge", network.DefaultBridge, "Linux bridge containers with network egress attach to")
	fs.StringVar(&f.subnet, "subnet", network.DefaultSubnet, "IPv4 subnet of the containers on the bridge")
	fs.StringArrayVar(&f.allow, "network-allow", nil, "a private or link-local prefix containers may reach (repeatable; the host itself never)")
	fs.StringArrayVar(&f.logAllow, "log-allow", nil, "a loopback, private or link-local prefix where tenants' logging services may be reached (repeatable)")
	fs.StringArrayVar(&f.dns, "dns", nil, "a DNS resolver for containers (repeatable; default: the host's /etc/resolv.conf nameservers that are not loopback)")
	fs.BoolVar(&f.noNetwork, "no-network", false, "give containers their own loopback only, whatever their function asks")
	fs.StringVar(&f.stateFiler, "state-filer", "", "SeaweedFS filer (host:port) holding tenants' state resources for every host (default: image files on this host only)")
	fs.StringVar(&f.weed, "weed", "weed", "SeaweedFS weed binary that mounts state resources from --state-filer")
	fs.Int64Var(&f.codeCacheMB, "code-cache", hostagent.DefaultCodeCacheMB, "MB of function packages kept extracted on this host; beyond it the least recently used are removed")
	fs.BoolVar(&f.keepInstances, "keep-instances", true, "leave idle instances running at a clean stop, for the next start of this agent to reattach (a restart keeps the pool warm); false destroys them")
	fs.DurationVar(&f.orphanTimeout, "orphan-timeout", 15*time.Minute, "an instance with no agent connected for this long stops itself (an agent that stopped and never came back)")
	fs.StringVar(&f.criu, "criu", "", "CRIU binary (deploy/setup.sh criu builds one): a function waiting for a call longer than --checkpoint-after is checkpointed and its memory given back; empty keeps it frozen")
	fs.DurationVar(&f.checkpointAfter, "checkpoint-after", time.Second, "with --criu, how long a waiting function stays frozen before it is checkpointed")
	fs.IntVar(&f.uidBase, "uid-base", 100000, "first host uid of instances (each gets 65536 of its own); agents sharing a kernel need disjoint ranges")
}

// Apply sets the flags' values on cfg.
func (f *Flags) Apply(cfg *hostagent.Config) error {
	pl, err := hostagent.ParsePool(f.pool)
	if err != nil {
		return err
	}
	cfg.Pool, cfg.MaxInstances, cfg.MaxContainersPerInstance = pl, f.maxInstances, f.maxContainers
	cfg.ContainerKeepAlive, cfg.InstanceKeepAlive, cfg.Accounting = f.containerKeepAlive, f.keepAlive, f.accounting
	cfg.Network.Bridge, cfg.Network.Subnet, cfg.NoNetwork = f.bridge, f.subnet, f.noNetwork
	cfg.MappedRootUID = f.uidBase
	cfg.State.Filer, cfg.State.Weed = f.stateFiler, f.weed
	if f.codeCacheMB <= 0 {
		return fmt.Errorf("--code-cache %d: want a positive number of MB", f.codeCacheMB)
	}
	cfg.CodeCacheMB = f.codeCacheMB
	if f.orphanTimeout <= 0 {
		return fmt.Errorf("--orphan-timeout %v: want a positive duration", f.orphanTimeout)
	}
	cfg.KeepInstances, cfg.OrphanTimeout = f.keepInstances, f.orphanTimeout
	if f.checkpointAfter <= 0 {
		return fmt.Errorf("--checkpoint-after %v: want a positive duration", f.checkpointAfter)
	}
	cfg.CRIU, cfg.CheckpointAfter = f.criu, f.checkpointAfter
	if f.capacityMB < 0 || f.capacityVCPU < 0 {
		return fmt.Errorf("--capacity-memory and --capacity-vcpu must not be negative")
	}
	cfg.Capacity.MemoryMB, cfg.Capacity.MilliCPU = f.capacityMB, int64(f.capacityVCPU*1000)
	cfg.InstancesCPUShares = f.instancesCPUShares // hostagent.Config.Validate checks the range
	if f.initCPUBoostFor <= 0 {
		return fmt.Errorf("--init-cpu-boost-for %v: want a positive duration", f.initCPUBoostFor)
	}
	cfg.InitCPUBoost, cfg.InitCPUBoostFor = f.initCPUBoost, f.initCPUBoostFor // and the range
	for _, a := range f.allow {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("--network-allow %q: %w", a, err)
		}
		cfg.Network.Allow = append(cfg.Network.Allow, p)
	}
	for _, a := range f.logAllow {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("--log-allow %q: %w", a, err)
		}
		cfg.LogAllow = append(cfg.LogAllow, p)
	}
	dns := f.dns
	if len(dns) == 0 {
		dns = hostResolvers("/etc/resolv.conf")
	}
	for _, d := range dns {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return fmt.Errorf("--dns %q: %w", d, err)
		}
		cfg.Network.DNS = append(cfg.Network.DNS, a)
	}
	return nil
}

// hostResolvers reads the nameservers of a resolv.conf, leaving out
// loopback ones (a local stub such as systemd-resolved's is not reachable
// from a container's network namespace).
func hostResolvers(path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		if a, err := netip.ParseAddr(f[1]); err == nil && !a.IsLoopback() {
			out = append(out, a.String())
		}
	}
	return out
}
