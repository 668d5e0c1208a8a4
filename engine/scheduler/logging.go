package scheduler

import (
	"context"
	"errors"
	"fmt"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/hostagent/dispatchpb"
)

// LogServices finds a tenant's logging services (registry.Registry does).
type LogServices interface {
	// ResolveLogService returns the service name names, or the tenant's
	// default for ""; ok is false when there is none.
	ResolveLogService(ctx context.Context, tenant, name string) (registry.LogService, bool, error)
}

// WithLogServices makes invocations send their output to their logging
// service (the invocation's, else its version's, else the tenant's
// default): claims prefer instances configured for it, and dispatches
// carry it. Without it no invocation has one.
func WithLogServices(ls LogServices) Option {
	return func(s *Scheduler) error { s.logServices = ls; return nil }
}

// logService resolves inv's logging service. A service the invocation
// names must exist; one its version names but that was deleted since is
// only logged: the invocation runs without it.
func (s *Scheduler) logService(ctx context.Context, inv *invoke.Invocation, v registry.Version) (*dispatchpb.LogService, error) {
	if s.logServices == nil {
		return nil, nil
	}
	name := inv.LogService
	if name == "" {
		name = v.LogService
	}
	ls, ok, err := s.logServices.ResolveLogService(ctx, v.Tenant, name)
	switch {
	case errors.Is(err, registry.ErrNotFound) && inv.LogService == "":
		s.log.Warn().Str("tenant", v.Tenant).Str("function", v.Function).Str("log_service", name).
			Msg("the function's logging service does not exist; running without it")
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("logging service: %w", err)
	case !ok:
		return nil, nil
	}
	return &dispatchpb.LogService{Id: ls.ID(), Endpoint: ls.Endpoint, Authorization: ls.Authorization}, nil
}
