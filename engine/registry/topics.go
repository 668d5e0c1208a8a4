package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Access is what a tenant may do with a topic it was granted.
type Access string

const (
	// AccessConsume: bind a function to the topic (read it).
	AccessConsume Access = "consume"
	// AccessProduce: produce to it, and name it as a result or dead-letter topic.
	AccessProduce Access = "produce"
	// AccessAll is both.
	AccessAll Access = "all"
)

// Covers reports whether a grants need.
func (a Access) Covers(need Access) bool { return a == AccessAll || a == need }

// ParseAccess checks an access name.
func ParseAccess(s string) (Access, error) {
	switch a := Access(s); a {
	case AccessConsume, AccessProduce, AccessAll:
		return a, nil
	}
	return "", fmt.Errorf("access %q: want consume, produce or all: %w", s, ErrInvalid)
}

// SystemOwner owns Ember's own topics (e.g. ember.usage); no tenant can be
// named so (see package tenants).
const SystemOwner = "ember"

// Topic is a Kafka topic known to Ember. A tenant owns the topics it created
// through Ember, all named "<tenant>.<name>" (its namespace); the
// administrator can grant any topic to a tenant, including topics Ember did
// not create. A tenant can use no other topic.
type Topic struct {
	Name string `json:"name"`
	// Owner is the tenant that created it, SystemOwner for Ember's own, or
	// "" for a topic the administrator registered by granting it.
	Owner string `json:"owner,omitempty"`
	// Partitions as created; 0 when Ember did not create it (yet): result
	// and dead-letter topics are created by the consumers when a binding
	// starts.
	Partitions int `json:"partitions,omitempty"`
	// Grants are the other tenants' rights.
	Grants  map[string]Access `json:"grants,omitempty"`
	Created time.Time         `json:"created"`
}

// allows reports whether tenant may use t for need.
func (t Topic) allows(tenant string, need Access) bool {
	return t.Owner == tenant || t.Grants[tenant].Covers(need)
}

// TenantTopic is name in tenant's namespace: "<tenant>.<name>", unless name
// already starts with "<tenant>.".
func TenantTopic(tenant, name string) string {
	if strings.HasPrefix(name, tenant+".") {
		return name
	}
	return tenant + "." + name
}

// inNamespace reports whether topic lies in tenant's namespace.
func inNamespace(tenant, topic string) bool {
	return strings.HasPrefix(topic, tenant+".") && len(topic) > len(tenant)+1
}

func (r *Registry) topicsKey() string { return r.prefix + "topics" }

func allTopics(ctx context.Context, c redis.Cmdable, key string) (map[string]Topic, error) {
	m, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Topic, len(m))
	for name, s := range m {
		var t Topic
		if err := json.Unmarshal([]byte(s), &t); err != nil {
			return nil, fmt.Errorf("registry: corrupt topic %q: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

// resolveTopic finds the topic tenant means by name, for need: name itself
// if tenant owns it or was granted it, else name in tenant's namespace if
// tenant owns that. Anything else is ErrNotFound, so that a tenant cannot
// learn which topics other tenants have.
func resolveTopic(topics map[string]Topic, tenant, name string, need Access) (string, error) {
	if err := ValidTopic(name); err != nil {
		return "", err
	}
	if t, ok := topics[name]; ok && t.allows(tenant, need) {
		return name, nil
	}
	full := TenantTopic(tenant, name)
	if t, ok := topics[full]; ok && t.Owner == tenant {
		return full, nil
	}
	return "", fmt.Errorf("topic %q: not found among the topics you own or were granted for %s: %w", name, need, ErrNotFound)
}

// ResolveTopic returns the Kafka topic that tenant's name refers to, if
// tenant may use it for need (see Topic).
func (r *Registry) ResolveTopic(ctx context.Context, tenant, name string, need Access) (string, error) {
	topics, err := allTopics(ctx, r.rdb, r.topicsKey())
	if err != nil {
		return "", r.classify("resolve topic", err)
	}
	return resolveTopic(topics, tenant, name, need)
}

// classify wraps a Redis error as unavailable, leaving corrupt-record
// errors as they are.
func (r *Registry) classify(op string, err error) error {
	if strings.HasPrefix(err.Error(), "registry: corrupt") {
		return err
	}
	return unavailable(op, err)
}

// PutTopic records t, keeping Created and Grants of an existing record. A
// topic owned by someone else is ErrConflict; the caller creates the Kafka
// topic before recording it.
func (r *Registry) PutTopic(ctx context.Context, t Topic) (Topic, error) {
	if err := ValidTopic(t.Name); err != nil {
		return Topic{}, err
	}
	if t.Owner != "" && t.Owner != SystemOwner && !inNamespace(t.Owner, t.Name) {
		return Topic{}, fmt.Errorf("topic %q is outside tenant %q's namespace %q: %w", t.Name, t.Owner, t.Owner+".", ErrInvalid)
	}
	var out Topic
	err := r.tx(ctx, "put topic", func(tx *redis.Tx) error {
		topics, err := allTopics(ctx, tx, r.topicsKey())
		if err != nil {
			return err
		}
		t.Created = r.now().UTC()
		if old, ok := topics[t.Name]; ok {
			if old.Owner != "" && old.Owner != t.Owner {
				return fmt.Errorf("topic %q exists: %w", t.Name, ErrConflict)
			}
			t.Created, t.Grants = old.Created, old.Grants
			if t.Partitions == 0 {
				t.Partitions = old.Partitions
			}
		}
		return r.writeTopic(ctx, tx, t)
	}, r.topicsKey())
	if err != nil {
		return Topic{}, err
	}
	out = t
	return out, nil
}

func (r *Registry) writeTopic(ctx context.Context, tx *redis.Tx, t Topic) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, r.topicsKey(), t.Name, b)
		p.Publish(ctx, r.ChangesChannel(), "topic "+t.Name)
		return nil
	})
	return err
}

// GetTopic returns a topic's record (for the administrator).
func (r *Registry) GetTopic(ctx context.Context, name string) (Topic, error) {
	s, err := r.rdb.HGet(ctx, r.topicsKey(), name).Bytes()
	if errors.Is(err, redis.Nil) {
		return Topic{}, fmt.Errorf("topic %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Topic{}, unavailable("get topic", err)
	}
	var t Topic
	if err := json.Unmarshal(s, &t); err != nil {
		return Topic{}, fmt.Errorf("registry: corrupt topic %q: %w", name, err)
	}
	return t, nil
}

// Grant lets tenant use topic for access (replacing an earlier grant). A
// topic Ember has no record of is recorded without an owner: the
// administrator vouches that it exists. Granting a tenant its own topic is
// ErrInvalid; Ember's own topics cannot be granted.
func (r *Registry) Grant(ctx context.Context, topic, tenant string, access Access) error {
	if err := ValidTopic(topic); err != nil {
		return err
	}
	if err := ValidName("tenant", tenant); err != nil {
		return err
	}
	if _, err := ParseAccess(string(access)); err != nil {
		return err
	}
	return r.tx(ctx, "grant topic", func(tx *redis.Tx) error {
		topics, err := allTopics(ctx, tx, r.topicsKey())
		if err != nil {
			return err
		}
		t, ok := topics[topic]
		if !ok {
			t = Topic{Name: topic, Created: r.now().UTC()}
		}
		switch t.Owner {
		case tenant:
			return fmt.Errorf("topic %q already belongs to %q: %w", topic, tenant, ErrInvalid)
		case SystemOwner:
			return fmt.Errorf("topic %q is Ember's own and cannot be granted: %w", topic, ErrInvalid)
		}
		t.Grants = maps.Clone(t.Grants)
		if t.Grants == nil {
			t.Grants = map[string]Access{}
		}
		t.Grants[tenant] = access
		return r.writeTopic(ctx, tx, t)
	}, r.topicsKey())
}

// Ungrant withdraws tenant's grant on topic; a missing grant is success.
// Bindings that read the topic under the grant keep their record but stop
// being applied (see ListBindings' callers).
func (r *Registry) Ungrant(ctx context.Context, topic, tenant string) error {
	return r.tx(ctx, "ungrant topic", func(tx *redis.Tx) error {
		topics, err := allTopics(ctx, tx, r.topicsKey())
		if err != nil {
			return err
		}
		t, ok := topics[topic]
		if !ok || t.Grants[tenant] == "" {
			return nil
		}
		t.Grants = maps.Clone(t.Grants)
		delete(t.Grants, tenant)
		if t.Owner == "" && len(t.Grants) == 0 {
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HDel(ctx, r.topicsKey(), topic)
				p.Publish(ctx, r.ChangesChannel(), "topic "+topic)
				return nil
			})
			return err
		}
		return r.writeTopic(ctx, tx, t)
	}, r.topicsKey())
}

// ListTopics returns the topics tenant owns or was granted, or every topic
// for "", sorted by name. A tenant sees only its own grant on a topic.
func (r *Registry) ListTopics(ctx context.Context, tenant string) ([]Topic, error) {
	topics, err := allTopics(ctx, r.rdb, r.topicsKey())
	if err != nil {
		return nil, r.classify("list topics", err)
	}
	out := make([]Topic, 0, len(topics))
	for _, t := range topics {
		switch {
		case tenant == "":
		case t.Owner == tenant:
			t.Grants = nil
		case t.Grants[tenant] != "":
			t.Grants = map[string]Access{tenant: t.Grants[tenant]}
		default:
			continue
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteTopic forgets tenant's topic name (which must be its own); a
// binding that reads it or writes to it is ErrConflict. It returns the
// Kafka topic, for the caller to delete; a missing topic is ("", nil).
func (r *Registry) DeleteTopic(ctx context.Context, tenant, name string) (string, error) {
	var full string
	err := r.tx(ctx, "delete topic", func(tx *redis.Tx) error {
		topics, err := allTopics(ctx, tx, r.topicsKey())
		if err != nil {
			return err
		}
		n := TenantTopic(tenant, name)
		if t, ok := topics[name]; ok && t.Owner == tenant {
			n = name
		}
		t, ok := topics[n]
		if !ok || t.Owner != tenant {
			return nil
		}
		bs, err := allBindings(ctx, tx, r.bindingsKey())
		if err != nil {
			return err
		}
		var refs []string
		for _, b := range bs {
			if b.Topic == n || b.DLQTopic == n || b.ResultTopic == n {
				refs = append(refs, b.Tenant+"/"+b.ID)
			}
		}
		if len(refs) > 0 {
			return fmt.Errorf("topic %q is used by bindings %s; delete them first: %w", n, strings.Join(refs, ", "), ErrConflict)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HDel(ctx, r.topicsKey(), n)
			p.Publish(ctx, r.ChangesChannel(), "topic "+n)
			return nil
		})
		full = n
		return err
	}, r.topicsKey(), r.bindingsKey())
	return full, err
}
