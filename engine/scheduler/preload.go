package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/hostagent/dispatchpb"
)

// MaxPreload bounds the instances one Preload loads a version on.
const MaxPreload = 8

// Preload loads the version qualifier names of tenant's function, without
// running it, on the idle instances where version from (the one it
// replaces: "$LATEST" before an update of $LATEST, or for a newly
// published version) is hot: their next invocation of it is a hot start.
// Instances busy now, and the warming pool, are left alone. It returns how
// many instances now hold the version.
func (s *Scheduler) Preload(ctx context.Context, tenant, function, qualifier, from string) (int, error) {
	v, err := s.resolver.Resolve(ctx, tenant, function, qualifier)
	if err != nil {
		return 0, err
	}
	choice, err := s.choose(ctx, v)
	if err != nil {
		return 0, err
	}
	prev := pool.VersionKey(tenant, function, from)
	vk := pool.VersionKey(v.Tenant, v.Function, v.Version)
	var claims []pool.Claim
	for range MaxPreload {
		c, ok, err := s.tryClaim(ctx, pool.Want{Tenant: tenant, Class: choice.Class, VersionKey: prev}, time.Now().Add(v.Timeout+s.cfg.LeaseGrace), nil)
		if err != nil || !ok {
			break
		}
		if c.Kind != pool.KindHot { // no more instances holding the old one
			s.release(ctx, c, "", true)
			break
		}
		claims = append(claims, c)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	loaded := 0
	for _, c := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.loadOn(ctx, v, c, "deploy"); err == nil {
				mu.Lock()
				loaded++
				mu.Unlock()
				s.m.preloads.WithLabelValues("loaded").Inc()
			} else {
				s.m.preloads.WithLabelValues("failed").Inc()
				s.log.Warn().Err(err).Str("instance", c.InstanceID).Str("version", vk).Msg("pre-load failed")
			}
		}()
	}
	wg.Wait()
	return loaded, nil
}

// Ahead is what LoadAhead did.
type Ahead int

const (
	// AheadLoaded: the version now runs on an instance that was not running it.
	AheadLoaded Ahead = iota + 1
	// AheadAlreadyHot: an idle instance already held it; nothing was done.
	AheadAlreadyHot
	// AheadNoInstance: no idle instance of the tenant and no warming-pool
	// instance was free, or invocations wait for an instance; nothing was done.
	AheadNoInstance
)

// LoadAhead loads version v on one idle instance of its tenant (or, failing
// that, a warming-pool instance), without running it, because an invocation
// of it is expected: its next invocation there is a hot start. That
// invocation's result carries tag (invoke.Result.PreloadTag). An instance
// where v is already hot is left as it is.
func (s *Scheduler) LoadAhead(ctx context.Context, v registry.Version, tag string) (Ahead, error) {
	choice, err := s.choose(ctx, v)
	if err != nil {
		return 0, err
	}
	if s.waiting.Load() > 0 {
		// Invocations wait for an instance here (past their first try): a
		// guess must not take the one a waiter was woken for.
		return AheadNoInstance, nil
	}
	vk := pool.VersionKey(v.Tenant, v.Function, v.Version)
	// tryClaim takes the tenant's held instances back when nothing is free.
	c, ok, err := s.tryClaim(ctx, pool.Want{Tenant: v.Tenant, Class: choice.Class, VersionKey: vk}, time.Now().Add(v.Timeout+s.cfg.LeaseGrace), nil)
	if err != nil {
		return 0, err
	}
	if !ok {
		return AheadNoInstance, nil
	}
	if c.Kind == pool.KindHot {
		s.release(ctx, c, "", true)
		return AheadAlreadyHot, nil
	}
	if err := s.loadOn(ctx, v, c, tag); err != nil {
		return 0, err
	}
	return AheadLoaded, nil
}

// loadOn asks c's agent to start v's container on c's instance, marked with
// tag, then releases c: with v hot if it loaded, dropped if the instance is
// gone.
func (s *Scheduler) loadOn(ctx context.Context, v registry.Version, c pool.Claim, tag string) error {
	keep, err := s.preload(ctx, v, c, tag)
	hot := ""
	if err == nil {
		hot = pool.VersionKey(v.Tenant, v.Function, v.Version)
	}
	s.release(ctx, c, hot, keep)
	return err
}

// preload is loadOn's dispatch. keep is false when the instance is gone.
func (s *Scheduler) preload(ctx context.Context, v registry.Version, c pool.Claim, tag string) (keep bool, err error) {
	client, err := s.agents.get(ctx, c.Agent)
	if err != nil {
		return true, err
	}
	req := versionRequest(v, "preload-"+invoke.NewID(), c.InstanceID)
	req.Preload, req.PreloadTag = true, tag
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := client.Dispatch(rctx, req)
	if err == nil && resp.GetStatus() != dispatchpb.Status_STATUS_OK {
		return true, fmt.Errorf("agent %s instance %s: %s: %s", c.Agent, c.InstanceID, resp.GetErrorType(), resp.GetPayload())
	}
	if err != nil {
		switch status.Code(err) {
		case codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied:
			return false, fmt.Errorf("agent %s instance %s: %w", c.Agent, c.InstanceID, err)
		case codes.Unavailable:
			s.agents.forget(c.Agent)
		}
		return true, fmt.Errorf("agent %s instance %s: %w", c.Agent, c.InstanceID, err)
	}
	return true, nil
}
