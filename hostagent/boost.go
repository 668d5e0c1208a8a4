package hostagent

import (
	"errors"
	"io/fs"
	"time"

	"github.com/rs/zerolog"

	"github.com/ember-run/ember/hostagent/sandbox"
)

// A start's CPU boost (Config.InitCPUBoost). A pool hit here spent 0 to 13
// ms of its 16 to 31 ms throttled: ember-init's spawn, the shim's and the
// bootstrap's runtime start-up all run at once in an instance whose quota
// is sized for the function's steady state (0.78 vCPU for 1024 MB). While a
// container starts, its own quota and its instance's are lifted; the first
// GET /next of its runtime (initproto.TypeReady), its process's exit, a
// failed start or InitCPUBoostFor puts them back. Quotas are ceilings:
// under contention the instances still share the CPU by weight, so a boost
// only hands out CPU nobody else wants. The kernel (cgroup v1) refuses a
// parent quota below a child's, so a child is lifted after its instance
// and put back before it, and an instance goes back once none of its
// containers is boosted. Instances boot boosted too (lifecycle.go: the
// quota runc sets, put back once ember-init answers). A boost the bound
// ended (a start-up that spins) leaves its instance without one for
// boostCooldown, so that a tenant who keeps starting containers cannot keep
// its instance lifted. Sub-pool
// instances are not boosted: their CPU is the tenant's declared and
// reserved constraint.

// boostCooldown is how long an instance whose boost ran out gets none.
const boostCooldown = time.Minute

// boost is one container's lifted quota.
type boost struct {
	cg     CgroupChild
	normal int64 // the container's own quota, put back at the end
	timer  *time.Timer
}

// startBoost lifts the quota of container id (cgroup cg, whose own quota is
// vcpu) and of its instance, unless the boost is off or no more than the
// function's share, and reports whether it did. endBoost ends it.
func (a *Agent) startBoost(log zerolog.Logger, in *instance, client *initClient, id string, cg CgroupChild, vcpu float64) bool {
	boosted := sandbox.QuotaUs(a.cfg.InitCPUBoost)
	// An ember-init of before Ready (an instance kept across the agent's
	// upgrade) would leave every boost to the bound.
	if boosted <= sandbox.QuotaUs(vcpu) || in.subpool != nil || !client.hello.Ready {
		return false
	}
	a.boostMu.Lock()
	defer a.boostMu.Unlock()
	if time.Now().Before(in.noBoostUntil) {
		return false
	}
	if len(in.boosts) == 0 {
		if err := a.deps.Cgroups.SetInstanceCPUQuota(in.cgroupPath, max(sandbox.QuotaUs(a.boostedInstanceVCPU()), a.instanceQuotaUs(in))); err != nil {
			log.Warn().Err(err).Msg("CPU boost: lift the instance's quota")
			return false
		}
	}
	if err := cg.SetCPUQuota(boosted); err != nil {
		log.Warn().Err(err).Msg("CPU boost: lift the container's quota")
		if len(in.boosts) == 0 {
			a.restoreInstanceQuota(log, in)
		}
		return false
	}
	if in.boosts == nil {
		in.boosts = map[string]*boost{}
	}
	b := &boost{cg: cg, normal: sandbox.QuotaUs(vcpu)}
	in.boosts[id] = b
	b.timer = time.AfterFunc(a.cfg.InitCPUBoostFor, func() { a.finishBoost(in, id, true) })
	return true
}

// endBoost puts back the quotas container id of in had before its start's
// boost, if it has one.
func (a *Agent) endBoost(in *instance, id string) { a.finishBoost(in, id, false) }

// finishBoost is endBoost; expired: the bound ended it.
func (a *Agent) finishBoost(in *instance, id string, expired bool) {
	a.boostMu.Lock()
	defer a.boostMu.Unlock()
	b := in.boosts[id]
	if b == nil {
		return
	}
	b.timer.Stop()
	delete(in.boosts, id)
	if expired {
		in.noBoostUntil = time.Now().Add(boostCooldown)
	}
	log := a.log.With().Str("instance", in.id).Str("container", id).Logger()
	if err := b.cg.SetCPUQuota(b.normal); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn().Err(err).Msg("CPU boost: put back the container's quota")
	}
	if len(in.boosts) == 0 {
		a.restoreInstanceQuota(log, in)
	}
}

// dropBoosts forgets in's boosts: it is being destroyed, its cgroups with it.
func (a *Agent) dropBoosts(in *instance) {
	a.boostMu.Lock()
	defer a.boostMu.Unlock()
	for id, b := range in.boosts {
		b.timer.Stop()
		delete(in.boosts, id)
	}
}

// restoreInstanceQuota gives in its own quota; boostMu held. An instance
// gone meanwhile has none to restore.
func (a *Agent) restoreInstanceQuota(log zerolog.Logger, in *instance) {
	if err := a.deps.Cgroups.SetInstanceCPUQuota(in.cgroupPath, a.instanceQuotaUs(in)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn().Err(err).Msg("CPU boost: put back the instance's quota")
	}
}

// boostedInstanceVCPU is an instance's CPU while it boots or one of its
// containers starts: the boost and ember-init's headroom.
func (a *Agent) boostedInstanceVCPU() float64 { return a.cfg.InitCPUBoost + sandbox.InitVCPU }

// instanceQuotaUs is in's own CFS quota, as its runtime spec set it.
func (a *Agent) instanceQuotaUs(in *instance) int64 {
	var milli int64
	if in.subpool != nil {
		milli = in.subpool.MilliCPU
	}
	return sandbox.QuotaUs(sandbox.InstanceVCPU(in.memoryMB, milli))
}

// containerVCPU is the CPU quota of a container of mem MB on in: the
// function's share, or in a sub-pool the sub-pool's CPU less ember-init's
// headroom.
func containerVCPU(in *instance, mem int64) float64 {
	if in.subpool != nil {
		return max(float64(in.subpool.MilliCPU)/1000-sandbox.InitVCPU, sandbox.MinVCPU)
	}
	return sandbox.FunctionVCPU(mem)
}
