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

	"github.com/ember-run/ember/consumers/settings"
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
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

// PutBinding creates or replaces tenant's binding b.ID. The function (and
// the version, for a numeric qualifier) must exist, else ErrNotFound. The
// topic must be one the tenant owns or was granted for consuming; the
// result and dead-letter topics ones it may produce to, or names in its
// namespace, which are then recorded as its own (the consumers create them
// when the binding starts). Any other topic is ErrNotFound, as if it did not
// exist. Created is kept on replace.
func (r *Registry) PutBinding(ctx context.Context, b Binding) (Binding, error) {
	for _, n := range [][2]string{{"binding", b.ID}, {"tenant", b.Tenant}, {"function", b.Function}} {
		if err := ValidName(n[0], n[1]); err != nil {
			return Binding{}, err
		}
	}
	if b.Qualifier == Latest {
		b.Qualifier = ""
	}
	if _, err := NormalizeQualifier(b.Qualifier); err != nil {
		return Binding{}, err
	}
	fkey := r.fnKey(b.Tenant, b.Function)
	var out Binding
	err := r.tx(ctx, "put binding", func(tx *redis.Tx) error {
		f, err := getFunction(ctx, tx, fkey)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("binding %q: function %q not found: %w", b.ID, b.Function, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := checkQualifier(ctx, tx, fkey, f, b.Qualifier); err != nil {
			return fmt.Errorf("binding %q: %w", b.ID, err)
		}
		topics, err := allTopics(ctx, tx, r.topicsKey())
		if err != nil {
			return err
		}
		nb := b
		if nb.Topic, err = resolveTopic(topics, b.Tenant, b.Topic, AccessConsume); err != nil {
			return fmt.Errorf("binding %q: %w", b.ID, err)
		}
		nb = nb.withDefaults()
		var owned []Topic
		for _, t := range []*string{&nb.DLQTopic, &nb.ResultTopic} {
			if *t == "" {
				continue
			}
			name, own, err := sinkTopic(topics, b.Tenant, *t)
			if err != nil {
				return fmt.Errorf("binding %q: %w", b.ID, err)
			}
			*t = name
			if own {
				owned = append(owned, Topic{Name: name, Owner: b.Tenant, Created: r.now().UTC()})
				topics[name] = owned[len(owned)-1]
			}
		}
		if err := nb.Validate(); err != nil {
			return err
		}
		old, err := getBinding(ctx, tx, r.bindingsKey(), nb.Key())
		switch {
		case err == nil:
			nb.Created = old.Created
			nb.Rewind = old.Rewind // rewinds are asked for with RewindBinding
		case errors.Is(err, ErrNotFound):
			nb.Created = r.now().UTC()
		default:
			return err
		}
		bb, err := json.Marshal(nb)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, t := range owned {
				tb, err := json.Marshal(t)
				if err != nil {
					return err
				}
				p.HSet(ctx, r.topicsKey(), t.Name, tb)
			}
			p.HSet(ctx, r.bindingsKey(), nb.Key(), bb)
			p.Publish(ctx, r.ChangesChannel(), "binding "+nb.Key())
			return nil
		})
		out = nb
		return err
	}, fkey, r.bindingsKey(), r.topicsKey())
	if err != nil {
		return Binding{}, err
	}
	return out, nil
}

// sinkTopic resolves a result or dead-letter topic of tenant: one it may
// produce to; else the name in its namespace ("out" is "<tenant>.out"),
// which becomes its own (own is true). What happens never depends on
// whether other tenants' topics exist, so it reveals nothing about them.
func sinkTopic(topics map[string]Topic, tenant, name string) (topic string, own bool, err error) {
	if t, err := resolveTopic(topics, tenant, name, AccessProduce); err == nil {
		return t, false, nil
	}
	if err := ValidTopic(name); err != nil {
		return "", false, err
	}
	full := TenantTopic(tenant, name)
	if err := ValidTopic(full); err != nil {
		return "", false, err
	}
	if t, taken := topics[full]; taken {
		// In tenant's namespace but not producible: Ember's own, or a
		// grant-only record; refuse rather than take it over.
		return "", false, fmt.Errorf("topic %q: not one you may produce to (owner %q): %w", full, t.Owner, ErrNotFound)
	}
	return full, true, nil
}

// RewindBinding asks the consumers of tenant's binding id to move its
// consumer group to rw.To or rw.Offsets (rw.ID is chosen here: newer than
// any earlier rewind of the binding). Each partition's owner applies it once,
// between two generations of the group, so that no commit of the old
// position can land after it. It returns the binding with its new Rewind.
func (r *Registry) RewindBinding(ctx context.Context, tenant, id string, rw settings.Rewind) (Binding, error) {
	var out Binding
	err := r.tx(ctx, "rewind binding", func(tx *redis.Tx) error {
		b, err := getBinding(ctx, tx, r.bindingsKey(), tenant+"/"+id)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("binding %q: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		// Ids grow with time, so that a binding deleted and made again
		// (same consumer group, whose commits remember applied rewinds)
		// still gets a newer one.
		rw.ID = r.now().UnixMilli()
		if b.Rewind != nil && rw.ID <= b.Rewind.ID {
			rw.ID = b.Rewind.ID + 1
		}
		if err := rw.Validate(); err != nil {
			return fmt.Errorf("binding %q: %v: %w", id, err, ErrInvalid)
		}
		b.Rewind = &rw
		bb, err := json.Marshal(b)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, r.bindingsKey(), b.Key(), bb)
			p.Publish(ctx, r.ChangesChannel(), "binding "+b.Key())
			return nil
		})
		out = b
		return err
	}, r.bindingsKey())
	if err != nil {
		return Binding{}, err
	}
	return out, nil
}

func getBinding(ctx context.Context, c redis.Cmdable, key, field string) (Binding, error) {
	return hgetJSON[Binding](ctx, c, key, field, "binding")
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
	b, err := getBinding(ctx, r.rdb, r.bindingsKey(), tenant+"/"+id)
	if errors.Is(err, ErrNotFound) {
		return Binding{}, fmt.Errorf("binding %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Binding{}, r.classify("get binding", err)
	}
	return b, nil
}

// DeleteBinding removes tenant's binding id. Deleting a missing binding
// succeeds without changing anything.
func (r *Registry) DeleteBinding(ctx context.Context, tenant, id string) error {
	if err := ValidName("binding", id); err != nil {
		return err
	}
	key := tenant + "/" + id
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, r.bindingsKey(), key)
		p.Publish(ctx, r.ChangesChannel(), "binding "+key)
		return nil
	})
	if err != nil {
		return unavailable("delete binding", err)
	}
	return nil
}

// ListBindings returns tenant's bindings, or every tenant's for "", sorted
// by tenant and id.
func (r *Registry) ListBindings(ctx context.Context, tenant string) ([]Binding, error) {
	all, err := allBindings(ctx, r.rdb, r.bindingsKey())
	if err != nil {
		return nil, r.classify("list bindings", err)
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

// WatchBindings signals on the returned channel whenever any binding or
// topic changes (a withdrawn grant stops the bindings that relied on it). It sends one signal as soon as its subscription is live (and
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
				if strings.HasPrefix(m.Payload, "binding ") || strings.HasPrefix(m.Payload, "topic ") {
					signal()
				}
			}
		}
	}()
	return ch
}

// ActiveBindings returns every enabled binding whose topics its tenant may
// still use (a grant can be withdrawn after the binding was made): the
// bindings consumers should run. Skipped lists the others with the reason.
func (r *Registry) ActiveBindings(ctx context.Context) (active []Binding, skipped map[string]string, err error) {
	bs, err := allBindings(ctx, r.rdb, r.bindingsKey())
	if err != nil {
		return nil, nil, r.classify("active bindings", err)
	}
	topics, err := allTopics(ctx, r.rdb, r.topicsKey())
	if err != nil {
		return nil, nil, r.classify("active bindings", err)
	}
	skipped = map[string]string{}
	for _, b := range bs {
		if !b.Enabled {
			continue
		}
		if reason := usable(topics, b); reason != "" {
			skipped[b.Key()] = reason
			continue
		}
		active = append(active, b)
	}
	return active, skipped, nil
}

// usable explains why b's tenant may no longer use one of b's topics, or
// returns "".
func usable(topics map[string]Topic, b Binding) string {
	check := func(name string, need Access) string {
		if name == "" {
			return ""
		}
		if t, ok := topics[name]; ok && t.allows(b.Tenant, need) {
			return ""
		}
		return fmt.Sprintf("topic %q is no longer available to tenant %q for %s", name, b.Tenant, need)
	}
	for _, c := range []struct {
		name string
		need Access
	}{{b.Topic, AccessConsume}, {b.DLQTopic, AccessProduce}, {b.ResultTopic, AccessProduce}} {
		if r := check(c.name, c.need); r != "" {
			return r
		}
	}
	return ""
}
