package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits of aliases.
const (
	// MaxAliasExtraVersions bounds the versions an alias splits traffic to
	// beside its main one.
	MaxAliasExtraVersions = 4
	maxAliasDescription   = 256
	aliasFieldPrefix      = "a:"
)

// Alias is a named pointer to a version of a function, optionally splitting
// invocations between it and extra versions by weight (a canary): Extra
// {"4": 0.1} sends about 10% of invocations to version 4 and the rest to
// Version. Invokes, bindings and routes name an alias as their qualifier;
// what ran is always reported as the version number.
type Alias struct {
	Tenant, Function, Name string
	// Version is "$LATEST" or a published version.
	Version string
	// Extra maps published versions to the share of invocations (0..1)
	// each receives; the shares sum to at most 1. Not with $LATEST.
	Extra       map[string]float64 `json:",omitempty"`
	Description string             `json:",omitempty"`
	Created     time.Time
	Updated     time.Time
}

// ValidAliasName checks an alias name: a function name that is not a
// version number and not $LATEST.
func ValidAliasName(name string) error {
	if name == Latest || !validName(name) || strings.Trim(name, "0123456789") == "" {
		return fmt.Errorf("alias name %q: want 1 to 64 of A-Z a-z 0-9 _ -, not only digits: %w", name, ErrInvalid)
	}
	return nil
}

// validate checks a against the function's published versions.
func (a Alias) validate(f Function) error {
	if err := ValidAliasName(a.Name); err != nil {
		return err
	}
	if len(a.Description) > maxAliasDescription {
		return fmt.Errorf("alias %q: description longer than %d bytes: %w", a.Name, maxAliasDescription, ErrInvalid)
	}
	if a.Version != Latest && !slices.Contains(f.Versions, a.Version) {
		return fmt.Errorf("alias %q: version %q of %q: %w", a.Name, a.Version, f.Name, ErrNotFound)
	}
	if len(a.Extra) == 0 {
		return nil
	}
	if a.Version == Latest {
		return fmt.Errorf("alias %q: a split needs a published main version, not $LATEST: %w", a.Name, ErrInvalid)
	}
	if len(a.Extra) > MaxAliasExtraVersions {
		return fmt.Errorf("alias %q: %d extra versions, at most %d: %w", a.Name, len(a.Extra), MaxAliasExtraVersions, ErrInvalid)
	}
	sum := 0.0
	for v, w := range a.Extra {
		switch {
		case v == a.Version:
			return fmt.Errorf("alias %q: version %s is both main and extra: %w", a.Name, v, ErrInvalid)
		case !slices.Contains(f.Versions, v):
			return fmt.Errorf("alias %q: extra version %q of %q: %w", a.Name, v, f.Name, ErrNotFound)
		case !(w > 0 && w <= 1): // also refuses NaN
			return fmt.Errorf("alias %q: weight %v of version %s: want more than 0, at most 1: %w", a.Name, w, v, ErrInvalid)
		}
		sum += w
	}
	if sum > 1+1e-9 {
		return fmt.Errorf("alias %q: extra weights sum to %.3f, more than 1: %w", a.Name, sum, ErrInvalid)
	}
	return nil
}

// PutAlias creates (create set; an existing alias is ErrConflict) or
// replaces (create unset; a missing one is ErrNotFound) tenant's alias
// a.Name of a.Function. "" as the version means $LATEST.
func (r *Registry) PutAlias(ctx context.Context, a Alias, create bool) (Alias, error) {
	if err := validNames(a.Tenant, a.Function); err != nil {
		return Alias{}, err
	}
	if a.Version == "" {
		a.Version = Latest
	}
	if len(a.Extra) == 0 {
		a.Extra = nil
	}
	key := r.fnKey(a.Tenant, a.Function)
	err := r.tx(ctx, "put alias", func(tx *redis.Tx) error {
		f, err := getFunction(ctx, tx, key)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("function %q: %w", a.Function, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := a.validate(f); err != nil {
			return err
		}
		old, err := getAlias(ctx, tx, key, a.Name)
		switch {
		case err == nil && create:
			return fmt.Errorf("alias %q of %q exists: %w", a.Name, a.Function, ErrConflict)
		case err == nil:
			a.Created = old.Created
		case errors.Is(err, ErrNotFound) && !create:
			return fmt.Errorf("alias %q of %q: %w", a.Name, a.Function, ErrNotFound)
		case errors.Is(err, ErrNotFound):
			a.Created = r.now().UTC()
		default:
			return err
		}
		a.Updated = r.now().UTC()
		b, err := json.Marshal(a)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, aliasFieldPrefix+a.Name, b)
			p.Publish(ctx, r.ChangesChannel(), fnMsg(a.Tenant, a.Function))
			return nil
		})
		return err
	}, key)
	r.invalidate(fnMsg(a.Tenant, a.Function))
	if err != nil {
		return Alias{}, err
	}
	return a, nil
}

func getAlias(ctx context.Context, c redis.Cmdable, key, name string) (Alias, error) {
	return hgetJSON[Alias](ctx, c, key, aliasFieldPrefix+name, "alias")
}

// GetAlias returns tenant's alias name of function.
func (r *Registry) GetAlias(ctx context.Context, tenant, function, name string) (Alias, error) {
	if err := validNames(tenant, function); err != nil {
		return Alias{}, err
	}
	if err := ValidAliasName(name); err != nil {
		return Alias{}, err
	}
	a, err := getAlias(ctx, r.rdb, r.fnKey(tenant, function), name)
	switch {
	case errors.Is(err, ErrNotFound):
		return Alias{}, fmt.Errorf("alias %q of %q: %w", name, function, ErrNotFound)
	case err != nil && !errors.Is(err, ErrInvalid):
		return Alias{}, unavailable("get alias", err)
	}
	return a, err
}

// ListAliases returns the aliases of tenant's function, by name. A missing
// function is ErrNotFound.
func (r *Registry) ListAliases(ctx context.Context, tenant, function string) ([]Alias, error) {
	if err := validNames(tenant, function); err != nil {
		return nil, err
	}
	m, err := r.rdb.HGetAll(ctx, r.fnKey(tenant, function)).Result()
	if err != nil {
		return nil, unavailable("list aliases", err)
	}
	if _, ok := m["fn"]; !ok {
		return nil, fmt.Errorf("function %q: %w", function, ErrNotFound)
	}
	var out []Alias
	for field, b := range m {
		if !strings.HasPrefix(field, aliasFieldPrefix) {
			continue
		}
		var a Alias
		if err := json.Unmarshal([]byte(b), &a); err != nil {
			return nil, fmt.Errorf("registry: corrupt alias record %s: %w", field, err)
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteAlias removes tenant's alias of function. One that a binding or a
// route names is ErrConflict; a missing one is ErrNotFound.
func (r *Registry) DeleteAlias(ctx context.Context, tenant, function, name string) error {
	if err := validNames(tenant, function); err != nil {
		return err
	}
	if err := ValidAliasName(name); err != nil {
		return err
	}
	key, rkey := r.fnKey(tenant, function), r.routesKey(tenant)
	err := r.tx(ctx, "delete alias", func(tx *redis.Tx) error {
		if _, err := getAlias(ctx, tx, key, name); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("alias %q of %q: %w", name, function, ErrNotFound)
			}
			return err
		}
		bs, err := allBindings(ctx, tx, r.bindingsKey())
		if err != nil {
			return err
		}
		for _, b := range bs {
			if b.Tenant == tenant && b.Function == function && b.Qualifier == name {
				return fmt.Errorf("alias %q: binding %q invokes it: %w", name, b.ID, ErrConflict)
			}
		}
		rts, err := routesOf(ctx, tx, rkey)
		if err != nil {
			return err
		}
		for _, rt := range rts {
			if rt.Function == function && rt.Qualifier == name {
				return fmt.Errorf("alias %q: route %s invokes it: %w", name, rt.Key(), ErrConflict)
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HDel(ctx, key, aliasFieldPrefix+name)
			p.Publish(ctx, r.ChangesChannel(), fnMsg(tenant, function))
			return nil
		})
		return err
	}, key, r.bindingsKey(), rkey)
	r.invalidate(fnMsg(tenant, function))
	return err
}

// checkQualifier checks that q (normalized; "" is $LATEST) names a version
// or an alias of f, stored at key: bindings and routes must not point at
// nothing.
func checkQualifier(ctx context.Context, c redis.Cmdable, key string, f Function, q string) error {
	switch {
	case q == "" || q == Latest:
		return nil
	case isVersionNumber(q):
		if !slices.Contains(f.Versions, q) {
			return fmt.Errorf("version %s of %q: %w", q, f.Name, ErrNotFound)
		}
		return nil
	}
	if _, err := getAlias(ctx, c, key, q); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("alias %q of %q: %w", q, f.Name, ErrNotFound)
		}
		return err
	}
	return nil
}

// aliasRoute is a cached alias: the versions it resolves to and the share
// of each extra one.
type aliasRoute struct {
	main    Version
	extra   []Version
	weights []float64
}

// pick chooses the version of one invocation. Independent draws: over n
// invocations an extra version's count is within a few sqrt(n·w·(1-w)) of
// n·w, on every replica alike, with no shared counter.
func (a *aliasRoute) pick() Version {
	x := rand.Float64()
	for i, w := range a.weights {
		if x < w {
			return a.extra[i]
		}
		x -= w
	}
	return a.main
}

// resolveAlias reads alias q and the versions it names (each through
// Resolve and its cache).
func (r *Registry) resolveAlias(ctx context.Context, tenant, name, q string) (*aliasRoute, error) {
	a, err := getAlias(ctx, r.rdb, r.fnKey(tenant, name), q)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, fmt.Errorf("function %q alias %s: %w", name, q, ErrNotFound)
	case err != nil && !errors.Is(err, ErrInvalid):
		return nil, unavailable("resolve", err)
	case err != nil:
		return nil, err
	}
	ar := &aliasRoute{}
	if ar.main, err = r.Resolve(ctx, tenant, name, a.Version); err != nil {
		return nil, err
	}
	versions := make([]string, 0, len(a.Extra))
	for v := range a.Extra {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		ev, err := r.Resolve(ctx, tenant, name, v)
		if err != nil {
			return nil, err
		}
		ar.extra = append(ar.extra, ev)
		ar.weights = append(ar.weights, a.Extra[v])
	}
	return ar, nil
}

// LongestTimeout is the longest timeout qualifier may run with: the
// version's, or the longest among an alias's versions (each invocation
// draws one). It reads through Resolve's cache.
func (r *Registry) LongestTimeout(ctx context.Context, tenant, name, qualifier string) (time.Duration, error) {
	e, err := r.lookup(ctx, tenant, name, qualifier)
	if err != nil || e.alias == nil {
		return e.v.Timeout, err
	}
	longest := e.alias.main.Timeout
	for _, v := range e.alias.extra {
		longest = max(longest, v.Timeout)
	}
	return longest, nil
}
