package tenants

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/internal/testenv"
)

func TestCreateRotateRevoke(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	admin := NewKey()
	s, err := New(rdb, WithAdminKey(admin))
	if err != nil {
		t.Fatal(err)
	}
	alice, key, err := s.Create(ctx, "alice")
	if err != nil || alice.Name != "alice" || !strings.HasPrefix(key, KeyPrefix) {
		t.Fatalf("Create = %+v, %q, %v", alice, key, err)
	}
	if _, _, err := s.Create(ctx, "alice"); !registry.IsConflict(err) {
		t.Fatalf("second Create: %v, want conflict", err)
	}
	for _, bad := range []string{"ember", "Admin", "bad name", ""} {
		if _, _, err := s.Create(ctx, bad); !registry.IsInvalid(err) {
			t.Errorf("Create(%q): %v, want invalid", bad, err)
		}
	}
	p, err := s.Authenticate(ctx, key)
	if err != nil || p != (Principal{Tenant: "alice"}) {
		t.Fatalf("Authenticate(alice's key) = %+v, %v", p, err)
	}
	if p, err := s.Authenticate(ctx, admin); err != nil || !p.Admin || p.Tenant != "" {
		t.Fatalf("Authenticate(admin) = %+v, %v", p, err)
	}
	for _, bad := range []string{"", "nope", KeyPrefix + "x", admin + "x", strings.Repeat("a", 4096)} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("Authenticate(%.10q): %v, want unauthenticated", bad, err)
		}
	}
	// The key is stored hashed: no Redis value holds it.
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		if strings.Contains(k, key) {
			t.Fatalf("redis key %q holds the API key", k)
		}
		if v, err := rdb.Get(ctx, k).Result(); err == nil && strings.Contains(v, key) {
			t.Fatalf("redis value of %q holds the API key", k)
		}
		if m, err := rdb.HGetAll(ctx, k).Result(); err == nil {
			for _, v := range m {
				if strings.Contains(v, key) {
					t.Fatalf("redis hash %q holds the API key", k)
				}
			}
		}
	}

	newKey, err := s.Rotate(ctx, "alice")
	if err != nil || newKey == key {
		t.Fatalf("Rotate = %q, %v", newKey, err)
	}
	if _, err := s.Authenticate(ctx, key); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("old key after rotate: %v", err)
	}
	if p, err := s.Authenticate(ctx, newKey); err != nil || p.Tenant != "alice" {
		t.Fatalf("new key: %+v, %v", p, err)
	}
	if err := s.Revoke(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, newKey); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("key after revoke: %v", err)
	}
	got, err := s.Get(ctx, "alice")
	if err != nil || !got.Revoked {
		t.Fatalf("Get after revoke = %+v, %v", got, err)
	}
	if _, err := s.Rotate(ctx, "bob"); !registry.IsNotFound(err) {
		t.Fatalf("Rotate(bob): %v, want not found", err)
	}
	if _, _, err := s.Create(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	ts, err := s.List(ctx)
	if err != nil || len(ts) != 2 || ts[0].Name != "alice" || ts[1].Name != "bob" {
		t.Fatalf("List = %+v, %v", ts, err)
	}
}

func TestAdminKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "admin.key")
	k1, created, err := LoadOrCreateAdminKey(path)
	if err != nil || !created || !strings.HasPrefix(k1, KeyPrefix) {
		t.Fatalf("first load = %q, %v, %v", k1, created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v, %v", st.Mode(), err)
	}
	k2, created, err := LoadOrCreateAdminKey(path)
	if err != nil || created || k2 != k1 {
		t.Fatalf("second load = %q, %v, %v", k2, created, err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrCreateAdminKey(path); err == nil {
		t.Fatal("a world-readable key file was accepted")
	}
	if _, err := New(nil); err == nil {
		t.Fatal("nil client accepted")
	}
	rdb, _ := testenv.Redis(t)
	if _, err := New(rdb, WithAdminKey("short")); err == nil {
		t.Fatal("a short admin key was accepted")
	}
}

// TestCacheFollowsRotation: with the cache live on two replicas, a key
// rotated on one stops working on the other within a pub/sub delivery,
// well before the cache's TTL, and at once on the one that rotated.
func TestCacheFollowsRotation(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	a, _ := New(rdb)
	b, _ := New(rdb)
	b.cacheTTL = time.Hour // only the change notice can evict
	for _, s := range []*Store{a, b} {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = s.Run(rctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		for deadline := time.Now().Add(5 * time.Second); ; {
			s.mu.Lock()
			live := s.live
			s.mu.Unlock()
			if live {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("cache never went live")
			}
			time.Sleep(5 * time.Millisecond) // polling the subscription
		}
	}
	_, key, err := a.Create(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Store{a, b} {
		if p, err := s.Authenticate(ctx, key); err != nil || p.Tenant != "alice" {
			t.Fatalf("authenticate: %+v, %v", p, err)
		}
	}
	b.mu.Lock()
	cached := len(b.cache)
	b.mu.Unlock()
	if cached != 1 {
		t.Fatalf("replica b caches %d keys", cached)
	}
	if _, err := a.Rotate(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, key); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("old key on the rotating replica: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, err := b.Authenticate(ctx, key)
		if errors.Is(err, ErrUnauthenticated) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("old key still accepted by the other replica: %v", err)
		}
		time.Sleep(5 * time.Millisecond) // waiting for the pub/sub notice
	}
}
