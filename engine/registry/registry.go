package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// DefaultCacheTTL bounds how long Resolve trusts a cached version even while
// the invalidation channel is live.
const DefaultCacheTTL = 30 * time.Second

// txRetries bounds optimistic transaction retries under contention.
const txRetries = 20

// Registry reads and writes registry records. It is safe for concurrent use.
type Registry struct {
	rdb      redis.UniversalClient
	prefix   string
	log      zerolog.Logger
	cacheTTL time.Duration
	now      func() time.Time

	mu     sync.Mutex
	live   bool   // Run's subscription is confirmed: the cache may be used
	gen    uint64 // bumped by every invalidation
	cache  map[string]map[string]cacheEntry
	routes map[string]routeEntry // tenant -> its route table
	fills  uint64                // route tables read from Redis, to version them
	// logsvcs: tenant -> its logging services (also when it has none)
	logsvcs map[string]logSvcEntry
}

type routeEntry struct {
	routes  []Route
	version uint64
	at      time.Time
}

type cacheEntry struct {
	v     Version
	alias *aliasRoute // set for an alias: v is unused
	at    time.Time
}

// Option configures a Registry.
type Option func(*Registry) error

// WithPrefix sets the key prefix. Default "{ember}:reg:". It must contain a
// Redis Cluster hash tag ("{...}").
func WithPrefix(p string) Option {
	return func(r *Registry) error {
		if !strings.Contains(p, "{") || !strings.Contains(p, "}") {
			return fmt.Errorf("registry: prefix %q has no hash tag {...}", p)
		}
		r.prefix = p
		return nil
	}
}

// WithLogger sets the component logger. Default: disabled.
func WithLogger(l zerolog.Logger) Option {
	return func(r *Registry) error { r.log = l.With().Str("component", "registry").Logger(); return nil }
}

// WithCacheTTL sets how long a cached Resolve result is kept. Default 30s;
// a negative value disables the cache.
func WithCacheTTL(d time.Duration) Option {
	return func(r *Registry) error { r.cacheTTL = d; return nil }
}

// New returns a Registry over rdb. Call Run to enable the Resolve cache.
func New(rdb redis.UniversalClient, opts ...Option) (*Registry, error) {
	if rdb == nil {
		return nil, errors.New("registry: nil redis client")
	}
	r := &Registry{rdb: rdb, prefix: "{ember}:reg:", log: zerolog.Nop(), cacheTTL: DefaultCacheTTL,
		now: time.Now, cache: map[string]map[string]cacheEntry{}, routes: map[string]routeEntry{}, logsvcs: map[string]logSvcEntry{}}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// ChangesChannel is the pub/sub channel that carries every change.
func (r *Registry) ChangesChannel() string { return r.prefix + "changes" }

func (r *Registry) fnsKey(tenant string) string  { return r.prefix + "fns:" + tenant }
func (r *Registry) codeKey(digest string) string { return r.prefix + "code:" + digest }
func (r *Registry) fnKey(tenant, name string) string {
	return r.prefix + "fn:" + tenant + ":" + name
}
func (r *Registry) bindingsKey() string { return r.prefix + "bindings" }

func fnMsg(tenant, name string) string { return "fn " + tenant + " " + name }

// unavailable wraps a Redis failure.
func unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("registry: %s: %w", op, err)
	}
	return fmt.Errorf("registry: %s: %w: %w", op, ErrUnavailable, err)
}

// tx runs fn in an optimistic transaction over keys, retrying on conflict.
func (r *Registry) tx(ctx context.Context, op string, fn func(*redis.Tx) error, keys ...string) error {
	for range txRetries {
		err := r.rdb.Watch(ctx, fn, keys...)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrConflict) {
			return unavailable(op, err)
		}
		return err
	}
	return fmt.Errorf("registry: %s: too much contention: %w", op, ErrUnavailable)
}

// PutFunction creates f or replaces its $LATEST configuration, keeping
// Created and the published Versions. It records that f's tenant uploaded
// f's package (see HasCode).
func (r *Registry) PutFunction(ctx context.Context, f Function) (Function, error) {
	f = f.withDefaults()
	if err := f.Validate(); err != nil {
		return Function{}, err
	}
	if err := r.checkLogService(ctx, f.Tenant, f.LogService); err != nil {
		return Function{}, err
	}
	f.LatestConfigHash = f.ConfigHash()
	key := r.fnKey(f.Tenant, f.Name)
	var out Function
	err := r.tx(ctx, "put function", func(tx *redis.Tx) error {
		now := r.now().UTC()
		f.Created, f.Updated, f.Versions = now, now, nil
		old, err := getFunction(ctx, tx, key)
		switch {
		case err == nil:
			f.Created, f.Versions = old.Created, old.Versions
		case !errors.Is(err, ErrNotFound):
			return err
		}
		b, err := json.Marshal(f)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, "fn", b)
			p.SAdd(ctx, r.fnsKey(f.Tenant), f.Name)
			p.SAdd(ctx, r.codeKey(f.CodeDigest), f.Tenant)
			p.Publish(ctx, r.ChangesChannel(), fnMsg(f.Tenant, f.Name))
			return nil
		})
		out = f
		return err
	}, key)
	r.invalidate(fnMsg(f.Tenant, f.Name))
	if err != nil {
		return Function{}, err
	}
	return out, nil
}

// HasCode reports whether tenant ever deployed the package digest: only
// then may it download the package.
func (r *Registry) HasCode(ctx context.Context, tenant, digest string) (bool, error) {
	ok, err := r.rdb.SIsMember(ctx, r.codeKey(digest), tenant).Result()
	if err != nil {
		return false, unavailable("code owners", err)
	}
	return ok, nil
}

func getFunction(ctx context.Context, c redis.Cmdable, key string) (Function, error) {
	return hgetJSON[Function](ctx, c, key, "fn", "function")
}

// hgetJSON reads the JSON record in field of hash key: ErrNotFound when
// absent, a corrupt-record error naming kind when it does not decode.
func hgetJSON[T any](ctx context.Context, c redis.Cmdable, key, field, kind string) (T, error) {
	var v T
	b, err := c.HGet(ctx, key, field).Bytes()
	if errors.Is(err, redis.Nil) {
		return v, ErrNotFound
	}
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("registry: corrupt %s record %s %s: %w", kind, key, field, err)
	}
	return v, nil
}

// GetFunction returns tenant's function name.
func (r *Registry) GetFunction(ctx context.Context, tenant, name string) (Function, error) {
	if err := validNames(tenant, name); err != nil {
		return Function{}, err
	}
	f, err := getFunction(ctx, r.rdb, r.fnKey(tenant, name))
	if errors.Is(err, ErrNotFound) {
		return Function{}, fmt.Errorf("function %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return Function{}, unavailable("get function", err)
	}
	return f, nil
}

func validNames(tenant, name string) error {
	if err := ValidName("tenant", tenant); err != nil {
		return err
	}
	return ValidName("function", name)
}

// ListFunctions returns tenant's functions sorted by name.
func (r *Registry) ListFunctions(ctx context.Context, tenant string) ([]Function, error) {
	if err := ValidName("tenant", tenant); err != nil {
		return nil, err
	}
	names, err := r.rdb.SMembers(ctx, r.fnsKey(tenant)).Result()
	if err != nil {
		return nil, unavailable("list functions", err)
	}
	sort.Strings(names)
	cmds, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, n := range names {
			p.HGet(ctx, r.fnKey(tenant, n), "fn")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("list functions", err)
	}
	out := make([]Function, 0, len(names))
	for _, c := range cmds {
		b, err := c.(*redis.StringCmd).Bytes()
		if errors.Is(err, redis.Nil) {
			continue // deleted between SMEMBERS and HGET
		}
		var f Function
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("registry: corrupt function record: %w", err)
		}
		out = append(out, f)
	}
	return out, nil
}

// DeleteFunction removes a function and all its versions. Deleting a
// missing function succeeds; a function that bindings reference is refused
// with ErrConflict.
func (r *Registry) DeleteFunction(ctx context.Context, tenant, name string) error {
	if err := validNames(tenant, name); err != nil {
		return err
	}
	key := r.fnKey(tenant, name)
	err := r.tx(ctx, "delete function", func(tx *redis.Tx) error {
		bs, err := allBindings(ctx, tx, r.bindingsKey())
		if err != nil {
			return err
		}
		var refs []string
		for _, b := range bs {
			if b.Tenant == tenant && b.Function == name {
				refs = append(refs, b.ID)
			}
		}
		if len(refs) > 0 {
			return fmt.Errorf("function %q is used by bindings %s; delete them first: %w", name, strings.Join(refs, ", "), ErrConflict)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, key)
			p.SRem(ctx, r.fnsKey(tenant), name)
			p.Publish(ctx, r.ChangesChannel(), fnMsg(tenant, name))
			return nil
		})
		return err
	}, key, r.bindingsKey())
	r.invalidate(fnMsg(tenant, name))
	return err
}

// PublishVersion snapshots $LATEST as the next version number. If $LATEST
// is identical (same ConfigHash) to the newest published version, that
// version is returned and nothing is written, as Lambda does.
func (r *Registry) PublishVersion(ctx context.Context, tenant, name string) (Version, error) {
	if err := validNames(tenant, name); err != nil {
		return Version{}, err
	}
	key := r.fnKey(tenant, name)
	var out Version
	err := r.tx(ctx, "publish version", func(tx *redis.Tx) error {
		f, err := getFunction(ctx, tx, key)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("function %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if n := len(f.Versions); n > 0 {
			last, err := getVersion(ctx, tx, key, f.Versions[n-1])
			if err != nil {
				return err
			}
			if last.ConfigHash == f.LatestConfigHash {
				out = last
				return nil
			}
		}
		next := 1
		if n := len(f.Versions); n > 0 {
			last, _ := strconv.Atoi(f.Versions[n-1])
			next = last + 1
		}
		v := f.latestVersion()
		v.Version = strconv.Itoa(next)
		v.Created = r.now().UTC()
		f.Versions = append(slices.Clone(f.Versions), v.Version)
		vb, err := json.Marshal(v)
		if err != nil {
			return err
		}
		fb, err := json.Marshal(f)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, "v:"+v.Version, vb, "fn", fb)
			p.Publish(ctx, r.ChangesChannel(), fnMsg(tenant, name))
			return nil
		})
		out = v
		return err
	}, key)
	r.invalidate(fnMsg(tenant, name))
	if err != nil {
		return Version{}, err
	}
	return out, nil
}

func getVersion(ctx context.Context, c redis.Cmdable, key, version string) (Version, error) {
	return hgetJSON[Version](ctx, c, key, "v:"+version, "version")
}

// Resolve returns the version that qualifier ("" or "$LATEST", a version
// number or an alias) names; an alias with extra versions picks one per
// call by their weights. It costs at most one Redis round trip per record
// read (an alias and its versions), none on a cache hit. Unknown functions,
// versions and aliases wrap ErrNotFound.
func (r *Registry) Resolve(ctx context.Context, tenant, name, qualifier string) (Version, error) {
	e, err := r.lookup(ctx, tenant, name, qualifier)
	if err != nil {
		return Version{}, err
	}
	if e.alias != nil {
		return e.alias.pick(), nil
	}
	return e.v, nil
}

// lookup returns what qualifier names - a version, or an alias with its
// versions - from the cache, else from Redis (and caches it).
func (r *Registry) lookup(ctx context.Context, tenant, name, qualifier string) (cacheEntry, error) {
	q, err := NormalizeQualifier(qualifier)
	if err != nil {
		return cacheEntry{}, err
	}
	if err := validNames(tenant, name); err != nil {
		return cacheEntry{}, err
	}
	fk := tenant + " " + name
	r.mu.Lock()
	gen, useCache := r.gen, r.live && r.cacheTTL >= 0
	if useCache {
		if e, ok := r.cache[fk][q]; ok && r.now().Sub(e.at) < r.cacheTTL {
			r.mu.Unlock()
			return e, nil
		}
	}
	r.mu.Unlock()

	key := r.fnKey(tenant, name)
	var e cacheEntry
	switch {
	case q == Latest:
		f, err := getFunction(ctx, r.rdb, key)
		if errors.Is(err, ErrNotFound) {
			return cacheEntry{}, fmt.Errorf("function %q: %w", name, ErrNotFound)
		} else if err != nil {
			return cacheEntry{}, unavailable("resolve", err)
		}
		e.v = f.latestVersion()
	case !isVersionNumber(q):
		if e.alias, err = r.resolveAlias(ctx, tenant, name, q); err != nil {
			return cacheEntry{}, err
		}
	default:
		e.v, err = getVersion(ctx, r.rdb, key, q)
		if errors.Is(err, ErrNotFound) {
			return cacheEntry{}, fmt.Errorf("function %q version %s: %w", name, q, ErrNotFound)
		} else if err != nil {
			return cacheEntry{}, unavailable("resolve", err)
		}
	}
	e.at = r.now()
	if useCache {
		r.mu.Lock()
		if r.live && r.gen == gen { // no invalidation raced this read
			m := r.cache[fk]
			if m == nil {
				m = map[string]cacheEntry{}
				r.cache[fk] = m
			}
			m[q] = e
		}
		r.mu.Unlock()
	}
	return e, nil
}

// invalidate applies a change message to the cache.
func (r *Registry) invalidate(msg string) {
	kind, rest, _ := strings.Cut(msg, " ")
	switch kind {
	case "fn":
		r.mu.Lock()
		r.gen++
		delete(r.cache, rest)
		r.mu.Unlock()
	case "route":
		r.mu.Lock()
		r.gen++
		delete(r.routes, rest)
		r.mu.Unlock()
	case "logsvc":
		r.mu.Lock()
		r.gen++
		delete(r.logsvcs, rest)
		r.mu.Unlock()
	}
}

// setLive turns the cache on or off; turning it off flushes it.
func (r *Registry) setLive(live bool) {
	r.mu.Lock()
	r.gen++
	r.live = live
	if !live {
		clear(r.cache)
		clear(r.routes)
		clear(r.logsvcs)
	}
	r.mu.Unlock()
}

// Run listens to the changes channel and keeps the Resolve cache coherent
// with other writers. Until Run's subscription is confirmed, and whenever
// the connection drops, Resolve bypasses the cache. Run returns nil when ctx
// is done.
func (r *Registry) Run(ctx context.Context) error {
	ps := r.rdb.Subscribe(ctx, r.ChangesChannel())
	// Receive does not return on ctx alone while blocked reading: closing
	// the PubSub unblocks it.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		stop()
		r.setLive(false)
		_ = ps.Close()
	}()
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			r.setLive(false)
			if ctx.Err() != nil {
				return nil
			}
			r.log.Warn().Err(err).Msg("changes subscription failed; cache off until resubscribed")
			select { // pace reconnect attempts; go-redis resubscribes on the next Receive
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				r.setLive(true)
			}
		case *redis.Message:
			r.invalidate(m.Payload)
		}
	}
}
