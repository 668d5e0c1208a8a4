package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

func allBindings(ctx context.Context, c redis.Cmdable, key string) ([]Binding, error) {
	m, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Binding, 0, len(m))
	for id, s := range m {
		var b Binding
		if err := json.Unmarshal([]byte(s), &b); err != nil {
			return nil, fmt.Errorf("registry: corrupt binding %q: %w", id, err)
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// PutBinding creates or replaces a binding. The function (and the version,
// for a numeric qualifier) must exist, else ErrNotFound. An id owned by
// another tenant, or a group id used by another binding, is ErrConflict.
// Created is kept on replace.
func (r *Registry) PutBinding(ctx context.Context, b Binding) (Binding, error) {
	b = b.withDefaults()
	if err := b.Validate(); err != nil {
		return Binding{}, err
	}
	if b.Qualifier == Latest {
		b.Qualifier = ""
	}
	fkey := r.fnKey(b.Tenant, b.Function)
	err := r.tx(ctx, "put binding", func(tx *redis.Tx) error {
		f, err := getFunction(ctx, tx, fkey)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("binding %q: function %q not found: %w", b.ID, b.Function, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if b.Qualifier != "" && !slicesContains(f.Versions, b.Qualifier) {
			return fmt.Errorf("binding %q: function %q version %s not found: %w", b.ID, b.Function, b.Qualifier, ErrNotFound)
		}
		all, err := allBindings(ctx, tx, r.bindingsKey())
		if err != nil {
			return err
		}
		b.Created = r.now().UTC()
		for _, o := range all {
			switch {
			case o.ID == b.ID && o.Tenant != b.Tenant:
				return fmt.Errorf("binding id %q is taken: %w", b.ID, ErrConflict)
			case o.ID == b.ID:
				b.Created = o.Created
			case o.GroupID == b.GroupID:
				return fmt.Errorf("binding %q: group id %q is used by binding %q: %w", b.ID, b.GroupID, o.ID, ErrConflict)
			}
		}
		bb, err := json.Marshal(b)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, r.bindingsKey(), b.ID, bb)
			p.Publish(ctx, r.ChangesChannel(), "binding "+b.ID)
			return nil
		})
		return err
	}, fkey, r.bindingsKey())
	if err != nil {
		return Binding{}, err
	}
	return b, nil
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// GetBinding returns tenant's binding id.
func (r *Registry) GetBinding(ctx context.Context, tenant, id string) (Binding, error) {
	s, err := r.rdb.HGet(ctx, r.bindingsKey(), id).Bytes()
	if errors.Is(err, redis.Nil) {
		return Binding{}, fmt.Errorf("binding %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Binding{}, unavailable("get binding", err)
	}
	var b Binding
	if err := json.Unmarshal(s, &b); err != nil {
		return Binding{}, fmt.Errorf("registry: corrupt binding %q: %w", id, err)
	}
	if b.Tenant != tenant {
		return Binding{}, fmt.Errorf("binding %q: %w", id, ErrNotFound)
	}
	return b, nil
}

// DeleteBinding removes tenant's binding id. Deleting a missing binding (or
// one of another tenant, which is missing as far as tenant can tell)
// succeeds without changing anything.
func (r *Registry) DeleteBinding(ctx context.Context, tenant, id string) error {
	if err := ValidName("binding", id); err != nil {
		return err
	}
	return r.tx(ctx, "delete binding", func(tx *redis.Tx) error {
		s, err := tx.HGet(ctx, r.bindingsKey(), id).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		var b Binding
		if err := json.Unmarshal(s, &b); err != nil {
			return fmt.Errorf("registry: corrupt binding %q: %w", id, err)
		}
		if b.Tenant != tenant {
			return nil
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HDel(ctx, r.bindingsKey(), id)
			p.Publish(ctx, r.ChangesChannel(), "binding "+id)
			return nil
		})
		return err
	}, r.bindingsKey())
}

// ListBindings returns tenant's bindings, or every tenant's for "", sorted by id.
func (r *Registry) ListBindings(ctx context.Context, tenant string) ([]Binding, error) {
	all, err := allBindings(ctx, r.rdb, r.bindingsKey())
	if err != nil {
		if strings.HasPrefix(err.Error(), "registry: corrupt") {
			return nil, err
		}
		return nil, unavailable("list bindings", err)
	}
	if tenant == "" {
		return all, nil
	}
	out := all[:0]
	for _, b := range all {
		if b.Tenant == tenant {
			out = append(out, b)
		}
	}
	return out, nil
}

// WatchBindings signals on the returned channel whenever any binding
// changes. It sends one signal as soon as its subscription is live (and
// again after every reconnect), so a caller that lists bindings on every
// signal never misses a change. Signals coalesce: the channel has a buffer of
// one. The channel is closed after ctx is done.
func (r *Registry) WatchBindings(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	ps := r.rdb.Subscribe(ctx, r.ChangesChannel())
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // unblocks Receive
	go func() {
		defer close(ch)
		defer stop()
		defer ps.Close()
		for {
			msg, err := ps.Receive(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Warn().Err(err).Msg("bindings watch failed; resubscribing")
				select {
				case <-ctx.Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			switch m := msg.(type) {
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					signal()
				}
			case *redis.Message:
				if strings.HasPrefix(m.Payload, "binding ") {
					signal()
				}
			}
		}
	}()
	return ch
}
