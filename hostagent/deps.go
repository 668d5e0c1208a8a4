package hostagent

import (
	"context"
	"crypto/tls"
	"errors"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/codefetch"
	"github.com/ember-run/ember/hostagent/network"
	"github.com/ember-run/ember/hostagent/sandbox"
	"github.com/ember-run/ember/hostagent/statefs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Runtime creates and destroys instances: *sandbox.Runtime (containerd)
// in production, whose spec and instance types it uses.
type Runtime interface {
	// Create creates and starts an instance whose PID 1 is ember-init. It
	// returns once the task runs; ember-init's socket may not exist yet.
	// created, if not nil, is called within Create (on its goroutine)
	// with the instance's pid once its namespaces exist, before anything
	// of it runs.
	Create(ctx context.Context, spec sandbox.InstanceSpec, created func(pid uint32)) (sandbox.Instance, error)
	// Define makes an instance's container without starting it: a Create
	// with the same spec later starts from it. Destroy removes it.
	Define(ctx context.Context, spec sandbox.InstanceSpec) error
	// Destroy stops (SIGTERM, grace, SIGKILL) and deletes an instance with
	// its snapshot. Destroying a missing instance is success.
	Destroy(ctx context.Context, id string) error
	// List returns the ids of every instance this runtime owns, including
	// those of a previous life of the agent.
	List(ctx context.Context) ([]string, error)
	// SameSpec reports whether instance id's container is the one spec
	// makes now: the same image (ember-init, ember-shim) and runtime spec
	// (its CPU quota aside). A restart takes back only such instances.
	SameSpec(ctx context.Context, id string, spec sandbox.InstanceSpec) (bool, error)
}

// Network connects containers' network namespaces to the outside world:
// *network.Network (CNI plugins and nftables) in production.
type Network interface {
	// Setup prepares the host side; called once by Run. keep names the
	// attachments of containers an earlier life of the agent attached and
	// the agent took back: they stay, every other one is released.
	Setup(ctx context.Context, keep map[string]bool) error
	// Attach connects the network namespace at netnsPath, for container id.
	Attach(ctx context.Context, id, netnsPath string) (network.Attachment, error)
	// Detach releases id's attachment; detaching the unattached is success.
	Detach(ctx context.Context, id, netnsPath string) error
	// Close undoes Setup.
	Close(ctx context.Context) error
}

var _ Network = (*network.Network)(nil)

// CgroupLimits are a container's child cgroup limits.
type CgroupLimits struct {
	MemoryBytes int64
	CPUShares   uint64
	PidsLimit   int64
	// VCPU is the container's CPU bandwidth in CPUs (a CFS quota); 0 means
	// only the instance's bound applies.
	VCPU float64
}

// CgroupChild is one container's cgroup.
type CgroupChild interface {
	// FDs returns the fds to send with initproto.TypeStart and their names
	// (initproto.FDCgroup2, initproto.FDTasksPrefix+controller).
	FDs() (fds []int, names []string)
	// CloseFDs closes the fds (once they were sent). Idempotent.
	CloseFDs()
	// Remove deletes the cgroup directories. The processes must be gone.
	Remove() error
	// OOMKills counts the processes the kernel's out-of-memory killer has
	// killed in the cgroup (0 where it cannot tell).
	OOMKills() int64
	// MemoryUsage is the memory the cgroup holds now.
	MemoryUsage() (int64, error)
	// Freeze stops (true) or thaws (false) the cgroup's processes.
	Freeze(on bool) error
	// Path is the cgroup's directory for a controller (cgroup.Unified for
	// cgroup2), "" if it has none.
	Path(ctrl string) string
	// SetCPUQuota changes the CFS quota Create gave it (a start's boost).
	SetCPUQuota(quotaUs int64) error
}

// Cgroups creates child cgroups (hostagent/cgroup in production).
type Cgroups interface {
	// Create makes the cgroup <instanceCgroupPath>/<name> in cgroup2 and
	// each v1 controller in use, with limits, owned by ownerUID.
	Create(instanceCgroupPath, name string, ownerUID int, limits CgroupLimits) (CgroupChild, error)
	// Open returns the cgroup <instanceCgroupPath>/<name> that Create made,
	// without fds: a container reattached after the agent restarted.
	Open(instanceCgroupPath, name string) (CgroupChild, error)
	// SetInstanceCPUQuota changes an instance's CFS quota (a start's boost).
	SetInstanceCPUQuota(instanceCgroupPath string, quotaUs int64) error
}

// Deps are the agent's collaborators.
type Deps struct {
	// Redis holds pool state and carries the demand channel. Required.
	Redis redis.UniversalClient
	// Pool is the pool state over Redis. Default: pool.New(Redis).
	Pool *pool.Store
	// Runtime creates instances. Required.
	Runtime Runtime
	// Cgroups creates container cgroups. Required.
	Cgroups Cgroups
	// Code fetches function packages. Required.
	Code codefetch.Source
	// TLS is the dispatch server's mutual TLS: the agent's certificate, and
	// clients accepted only with an emberd certificate of the same
	// authority (pki.ServerConfig with pki.RoleEmberd). Required: an agent
	// never serves dispatches in the clear.
	TLS *tls.Config
	// Log is the base logger; the agent adds component=agent.
	Log zerolog.Logger
	// Accounting measures containers' usage. Default: chosen by
	// Config.Accounting, opened at Run and closed when Run returns.
	Accounting Accounting
	// Network attaches containers that ask for egress (set up by Run and
	// closed when Run returns). Default: none; such containers then fail.
	Network Network
	// Metrics receives the per tenant and function usage counters
	// (ember_usage_*). Default: none registered.
	Metrics prometheus.Registerer
	// State attaches the tenants' state resources to instances
	// (hostagent/statefs; closed when Run returns). Default: none;
	// functions with state resources then fail to start.
	State State
}

// State keeps the tenants' state resources on this host (hostagent/statefs).
type State interface {
	// Prepare makes an instance's state directory on the host a mount
	// point whose later mounts reach the instance.
	Prepare(dir string) error
	// Attach mounts the tenant's resource (created with sizeMB if new) at
	// dir/name.
	Attach(tenant, name string, sizeMB int64, dir string) error
	// Release unmounts everything under dir and dir itself.
	Release(dir string) error
	// Close unmounts every resource.
	Close() error
	// Resources lists the resources mounted on this host.
	Resources() []statefs.Resource
}

func (d *Deps) validate() error {
	switch {
	case d.Redis == nil:
		return errors.New("hostagent: Deps.Redis is required")
	case d.Runtime == nil:
		return errors.New("hostagent: Deps.Runtime is required")
	case d.Cgroups == nil:
		return errors.New("hostagent: Deps.Cgroups is required")
	case d.Code == nil:
		return errors.New("hostagent: Deps.Code is required")
	case d.TLS == nil || len(d.TLS.Certificates) == 0 || d.TLS.ClientAuth != tls.RequireAndVerifyClientCert:
		return errors.New("hostagent: Deps.TLS is required, with a certificate and verified client certificates")
	}
	if d.Pool == nil {
		p, err := pool.New(d.Redis)
		if err != nil {
			return err
		}
		d.Pool = p
	}
	return nil
}
