package hostagent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/containerd"
	"github.com/ember-run/ember/hostagent/image"

	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/network"
	"github.com/ember-run/ember/hostagent/sandbox"
	"github.com/ember-run/ember/hostagent/statefs"
)

// HostCgroups returns Cgroups over hostagent/cgroup: a child cgroup in
// cgroup2 and each v1 controller, under the instance's cgroup.
func HostCgroups() Cgroups { return hostCgroups{} }

type hostCgroups struct{}

var (
	_ Cgroups     = hostCgroups{}
	_ CgroupChild = (*cgroup.Child)(nil)
)

// Create implements Cgroups. hostagent/cgroup sets memory and pids limits;
// CPU weight is the instance's (the container is its only heavy user).
func (hostCgroups) Create(instanceCgroupPath, name string, ownerUID int, l CgroupLimits) (CgroupChild, error) {
	c, err := cgroup.Create(instanceCgroupPath, name, ownerUID, cgroup.Limits{
		MemoryBytes: l.MemoryBytes, PidsMax: l.PidsLimit, CPUShares: l.CPUShares,
		CPUQuotaUs: sandbox.QuotaUs(l.VCPU), CPUPeriodUs: sandbox.CFSPeriodUs, CPUBurstUs: sandbox.QuotaUs(l.VCPU),
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Open implements Cgroups.
func (hostCgroups) Open(instanceCgroupPath, name string) (CgroupChild, error) {
	c, err := cgroup.Open(instanceCgroupPath, name)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// SetInstanceCPUQuota implements Cgroups.
func (hostCgroups) SetInstanceCPUQuota(instanceCgroupPath string, quotaUs int64) error {
	return cgroup.SetCPUQuota(instanceCgroupPath, quotaUs)
}

var _ Runtime = (*sandbox.Runtime)(nil)

// LabelAgent is the containerd label naming the agent that owns an
// instance; Runtime.List of ContainerdRuntime only returns that agent's.
const LabelAgent = "ember.agent"

// ContainerdRuntime makes sure containerd holds the instance image built
// from initBinary (a static ember-init) and returns a runtime that starts
// instances of it in namespace, labelled as agentID's. Its HostRootUID and
// IDRange are the agent's Config.MappedRootUID and UIDRange.
func ContainerdRuntime(ctx context.Context, client *containerd.Client, namespace, initBinary, agentID string, opts ...sandbox.Option) (*sandbox.Runtime, error) {
	img, err := image.Ensure(ctx, client, namespace, initBinary)
	if err != nil {
		return nil, fmt.Errorf("hostagent: instance image: %w", err)
	}
	opts = append([]sandbox.Option{sandbox.WithLabels(map[string]string{LabelAgent: agentID})}, opts...)
	r, err := sandbox.New(client, namespace, img, opts...)
	if err != nil {
		return nil, fmt.Errorf("hostagent: %w", err)
	}
	return r, nil
}

// ContainerdSetup says how to reach containerd and which ember-init to run.
type ContainerdSetup struct {
	// Socket is containerd's gRPC socket.
	Socket string
	// Namespace is the containerd namespace for instances. Default: "ember".
	Namespace string
	// InitBinary is the static ember-init put into the instance image.
	InitBinary string
}

// NewContainerd builds an Agent whose instances run in containerd: it
// connects, makes sure the instance image exists and sets
// cfg.MappedRootUID. deps.Runtime and deps.Cgroups are filled in. The
// returned close function releases the containerd connection after Run.
func NewContainerd(ctx context.Context, cfg Config, cs ContainerdSetup, deps Deps) (*Agent, func(), error) {
	if cs.Namespace == "" {
		cs.Namespace = "ember"
	}
	cfg = cfg.WithDefaults()
	cc, err := containerd.New(cs.Socket, containerd.WithDefaultNamespace(cs.Namespace))
	if err != nil {
		return nil, nil, fmt.Errorf("hostagent: containerd %s: %w", cs.Socket, err)
	}
	rt, err := ContainerdRuntime(ctx, cc, cs.Namespace, cs.InitBinary, cfg.AgentID,
		sandbox.WithUserNamespace(uint32(cfg.MappedRootUID), uint32(cfg.UIDRange)))
	if err != nil {
		_ = cc.Close()
		return nil, nil, err
	}
	deps.Runtime, deps.Cgroups = rt, HostCgroups()
	if deps.State == nil {
		st, err := statefs.New(filepath.Join(cfg.StateDir, "state"), cfg.State)
		if err != nil {
			_ = cc.Close()
			return nil, nil, fmt.Errorf("hostagent: %w", err)
		}
		deps.State = st
		if deps.Metrics != nil {
			if err := deps.Metrics.Register(st); err != nil {
				_ = cc.Close()
				return nil, nil, fmt.Errorf("hostagent: state metrics: %w", err)
			}
		}
	}
	if !cfg.NoNetwork && deps.Network == nil {
		n, err := network.New(cfg.Network)
		if err != nil {
			_ = cc.Close()
			return nil, nil, fmt.Errorf("hostagent: %w", err)
		}
		deps.Network = n
	}
	a, err := New(cfg, deps)
	if err != nil {
		_ = cc.Close()
		return nil, nil, err
	}
	if err := cgroup.SetParentShares(sandbox.CgroupParent, cfg.InstancesCPUShares); err != nil {
		_ = cc.Close()
		return nil, nil, fmt.Errorf("hostagent: the instances' CPU weight: %w", err)
	}
	return a, func() { _ = cc.Close() }, nil
}

// InitBinary is the static ember-init to build instances from: path when
// given, else "ember-init" beside the running executable (how `make build`
// lays out bin/).
func InitBinary(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("hostagent: locate ember-init: %w", err)
	}
	return filepath.Join(filepath.Dir(exe), "ember-init"), nil
}
