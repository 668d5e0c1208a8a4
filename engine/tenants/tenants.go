package tenants

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-run/ember/engine/registry"
)

// ErrUnauthenticated: no key, or a key that is unknown or revoked.
var ErrUnauthenticated = errors.New("unauthenticated")

// Reserved names no tenant may take: "ember" names Ember's own topics
// (ember.usage, ember.* consumer groups) and "admin" the administrator.
var Reserved = []string{"ember", "admin"}

// KeyPrefix starts every key Ember issues, so that a leaked key is easy to
// recognise (and to scan for).
const KeyPrefix = "ek_"

// Tenant is an account.
type Tenant struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// Rotated is when the current key was issued.
	Rotated time.Time `json:"rotated"`
	// Revoked is set while the tenant has no valid key.
	Revoked bool `json:"revoked,omitempty"`
}

// Principal is who a request acts as.
type Principal struct {
	// Tenant is the authenticated tenant; empty for the administrator.
	Tenant string
	// Admin is true for the administrator key.
	Admin bool
}

// Store reads and writes tenants and keys. It is safe for concurrent use.
type Store struct {
	rdb      redis.UniversalClient
	prefix   string
	adminSum [sha256.Size]byte
	hasAdmin bool
	now      func() time.Time

	// The cache of authenticated keys, used only while Run's subscription
	// to key changes is live (see Run).
	mu       sync.Mutex
	live     bool
	gen      uint64
	cacheTTL time.Duration
	cache    map[string]cachedKey // by key hash
}

type cachedKey struct {
	tenant string
	at     time.Time
}

// DefaultCacheTTL bounds how long an authenticated key is trusted without
// asking Redis, even while no change was announced.
const DefaultCacheTTL = 5 * time.Second

// Option configures a Store.
type Option func(*Store) error

// WithAdminKey sets the administrator key. Without one, no request is
// an administrator's.
func WithAdminKey(key string) Option {
	return func(s *Store) error {
		if err := checkKeyText(key); err != nil {
			return fmt.Errorf("tenants: admin key: %w", err)
		}
		s.adminSum, s.hasAdmin = sha256.Sum256([]byte(key)), true
		return nil
	}
}

// WithPrefix sets the key prefix. Default "{ember}:ten:"; it must contain a
// Redis Cluster hash tag.
func WithPrefix(p string) Option {
	return func(s *Store) error {
		if !strings.Contains(p, "{") || !strings.Contains(p, "}") {
			return fmt.Errorf("tenants: prefix %q has no hash tag {...}", p)
		}
		s.prefix = p
		return nil
	}
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient, opts ...Option) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("tenants: nil redis client")
	}
	s := &Store{rdb: rdb, prefix: "{ember}:ten:", now: time.Now, cacheTTL: DefaultCacheTTL, cache: map[string]cachedKey{}}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// minKeyLen bounds how short an operator-provided admin key may be.
const minKeyLen = 24

func checkKeyText(key string) error {
	if len(key) < minKeyLen {
		return fmt.Errorf("key must be at least %d characters", minKeyLen)
	}
	if strings.ContainsAny(key, " \t\r\n") {
		return errors.New("key must not contain whitespace")
	}
	return nil
}

// NewKey returns a fresh random key: KeyPrefix and 256 random bits in
// unpadded base64url.
func NewKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func (s *Store) tenantsKey() string        { return s.prefix + "tenants" }
func (s *Store) changesKey() string        { return s.prefix + "changes" }
func (s *Store) keyKey(hash string) string { return s.prefix + "key:" + hash }
func (s *Store) keysKey(name string) string {
	return s.prefix + "keys:" + name
}

// ValidName checks a tenant name: registry.ValidName and not reserved.
func ValidName(name string) error {
	if err := registry.ValidName("tenant", name); err != nil {
		return err
	}
	if slices.Contains(Reserved, strings.ToLower(name)) {
		return fmt.Errorf("tenant name %q is reserved: %w", name, registry.ErrInvalid)
	}
	return nil
}

func unavailable(op string, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("tenants: %s: %w", op, err)
	}
	return fmt.Errorf("tenants: %s: %w: %w", op, registry.ErrUnavailable, err)
}

// Create records a new tenant and returns it with its first key, which is
// not kept anywhere and cannot be shown again. An existing name is
// registry.ErrConflict.
func (s *Store) Create(ctx context.Context, name string) (Tenant, string, error) {
	if err := ValidName(name); err != nil {
		return Tenant{}, "", err
	}
	now := s.now().UTC()
	t := Tenant{Name: name, Created: now, Rotated: now}
	b, err := json.Marshal(t)
	if err != nil {
		return Tenant{}, "", err
	}
	key := NewKey()
	h := keyHash(key)
	var created bool
	err = s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		exists, err := tx.HExists(ctx, s.tenantsKey(), name).Result()
		if err != nil || exists {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, s.tenantsKey(), name, b)
			p.Set(ctx, s.keyKey(h), name, 0)
			p.Del(ctx, s.keysKey(name))
			p.SAdd(ctx, s.keysKey(name), h)
			return nil
		})
		created = err == nil
		return err
	}, s.tenantsKey())
	if err != nil {
		return Tenant{}, "", unavailable("create "+name, err)
	}
	if !created {
		return Tenant{}, "", fmt.Errorf("tenant %q exists: %w", name, registry.ErrConflict)
	}
	return t, key, nil
}

// Get returns one tenant.
func (s *Store) Get(ctx context.Context, name string) (Tenant, error) {
	b, err := s.rdb.HGet(ctx, s.tenantsKey(), name).Bytes()
	if errors.Is(err, redis.Nil) {
		return Tenant{}, fmt.Errorf("tenant %q: %w", name, registry.ErrNotFound)
	}
	if err != nil {
		return Tenant{}, unavailable("get "+name, err)
	}
	var t Tenant
	if err := json.Unmarshal(b, &t); err != nil {
		return Tenant{}, fmt.Errorf("tenants: corrupt record of %q: %w", name, err)
	}
	return t, nil
}

// List returns every tenant, sorted by name.
func (s *Store) List(ctx context.Context) ([]Tenant, error) {
	m, err := s.rdb.HGetAll(ctx, s.tenantsKey()).Result()
	if err != nil {
		return nil, unavailable("list", err)
	}
	out := make([]Tenant, 0, len(m))
	for name, v := range m {
		var t Tenant
		if err := json.Unmarshal([]byte(v), &t); err != nil {
			return nil, fmt.Errorf("tenants: corrupt record of %q: %w", name, err)
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Rotate issues a new key for the tenant and revokes every older one in the
// same transaction. It returns the new key, shown once.
func (s *Store) Rotate(ctx context.Context, name string) (string, error) {
	key := NewKey()
	return key, s.replaceKeys(ctx, name, keyHash(key))
}

// Revoke removes every key of the tenant: its requests are refused until
// the administrator rotates it. Its functions, bindings and topics stay.
func (s *Store) Revoke(ctx context.Context, name string) error {
	return s.replaceKeys(ctx, name, "")
}

// replaceKeys drops the tenant's keys and, if newHash is set, adds it.
func (s *Store) replaceKeys(ctx context.Context, name, newHash string) error {
	if err := registry.ValidName("tenant", name); err != nil {
		return err
	}
	var missing bool
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		b, err := tx.HGet(ctx, s.tenantsKey(), name).Bytes()
		if errors.Is(err, redis.Nil) {
			missing = true
			return nil
		}
		if err != nil {
			return err
		}
		var t Tenant
		if err := json.Unmarshal(b, &t); err != nil {
			return fmt.Errorf("tenants: corrupt record of %q: %w", name, err)
		}
		old, err := tx.SMembers(ctx, s.keysKey(name)).Result()
		if err != nil {
			return err
		}
		t.Revoked = newHash == ""
		if newHash != "" {
			t.Rotated = s.now().UTC()
		}
		nb, err := json.Marshal(t)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, h := range old {
				p.Del(ctx, s.keyKey(h))
			}
			p.Publish(ctx, s.changesKey(), name)
			p.Del(ctx, s.keysKey(name))
			if newHash != "" {
				p.Set(ctx, s.keyKey(newHash), name, 0)
				p.SAdd(ctx, s.keysKey(name), newHash)
			}
			p.HSet(ctx, s.tenantsKey(), name, nb)
			return nil
		})
		return err
	}, s.tenantsKey(), s.keysKey(name))
	s.flush() // this replica forgets old keys at once; others on the publish
	if err != nil {
		return unavailable("replace keys of "+name, err)
	}
	if missing {
		return fmt.Errorf("tenant %q: %w", name, registry.ErrNotFound)
	}
	return nil
}

// Authenticate returns who key belongs to. An empty, unknown or revoked key
// is ErrUnauthenticated; a Redis failure is registry.ErrUnavailable.
func (s *Store) Authenticate(ctx context.Context, key string) (Principal, error) {
	if key == "" {
		return Principal{}, fmt.Errorf("no API key: %w", ErrUnauthenticated)
	}
	if s.hasAdmin {
		sum := sha256.Sum256([]byte(key))
		if subtle.ConstantTimeCompare(sum[:], s.adminSum[:]) == 1 {
			return Principal{Admin: true}, nil
		}
	}
	if !strings.HasPrefix(key, KeyPrefix) || len(key) > 128 {
		return Principal{}, fmt.Errorf("unknown API key: %w", ErrUnauthenticated)
	}
	h := keyHash(key)
	s.mu.Lock()
	gen, live := s.gen, s.live
	if c, ok := s.cache[h]; ok && live && s.now().Sub(c.at) < s.cacheTTL {
		s.mu.Unlock()
		return Principal{Tenant: c.tenant}, nil
	}
	s.mu.Unlock()
	name, err := s.rdb.Get(ctx, s.keyKey(h)).Result()
	if errors.Is(err, redis.Nil) {
		return Principal{}, fmt.Errorf("unknown or revoked API key: %w", ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, unavailable("authenticate", err)
	}
	s.mu.Lock()
	if s.live && s.gen == gen { // no change raced this read
		if len(s.cache) > maxCached {
			clear(s.cache)
		}
		s.cache[h] = cachedKey{tenant: name, at: s.now()}
	}
	s.mu.Unlock()
	return Principal{Tenant: name}, nil
}

// maxCached bounds the cache of authenticated keys.
const maxCached = 10000

// flush forgets every cached key.
func (s *Store) flush() {
	s.mu.Lock()
	s.gen++
	clear(s.cache)
	s.mu.Unlock()
}

func (s *Store) setLive(live bool) {
	s.mu.Lock()
	s.gen++
	s.live = live
	clear(s.cache)
	s.mu.Unlock()
}

// Run keeps the cache of authenticated keys coherent with key changes made
// by any replica (rotate and revoke publish them): until its subscription
// is confirmed, and whenever it drops, every request asks Redis. It
// returns nil when ctx is done.
func (s *Store) Run(ctx context.Context) error {
	ps := s.rdb.Subscribe(ctx, s.changesKey())
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // unblocks Receive
	defer func() {
		stop()
		s.setLive(false)
		_ = ps.Close()
	}()
	for {
		msg, err := ps.Receive(ctx)
		if err != nil {
			s.setLive(false)
			if ctx.Err() != nil {
				return nil
			}
			select { // go-redis resubscribes on the next Receive
			case <-ctx.Done():
				return nil
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.setLive(true)
			}
		case *redis.Message:
			s.flush()
		}
	}
}
