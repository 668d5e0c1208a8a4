package registry

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/consumers/settings"
	"github.com/ember-run/ember/internal/testenv"
	"github.com/redis/go-redis/v9"
)

const digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
const digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

func newReg(t *testing.T, rdb *redis.Client, opts ...Option) *Registry {
	t.Helper()
	r, err := New(rdb, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// running starts r.Run and waits until its cache is live.
func running(t testing.TB, r *Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	waitFor(t, "cache live", func() bool { r.mu.Lock(); defer r.mu.Unlock(); return r.live })
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
	}
}

func fn(name string) Function {
	return Function{Tenant: "t1", Name: name, CodeDigest: digestA, CodeSize: 10, MemoryMB: 256,
		Timeout: 5 * time.Second, Env: map[string]string{"A": "1"}}
}

func TestFunctionCRUD(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	r := newReg(t, rdb)
	f, err := r.PutFunction(ctx, Function{Tenant: "t1", Name: "f", CodeDigest: digestA})
	if err != nil {
		t.Fatal(err)
	}
	if f.Handler != DefaultHandler || f.Runtime != RuntimeProvided || f.MemoryMB != 128 || f.Timeout != 3*time.Second || f.LatestConfigHash == "" {
		t.Fatalf("defaults not applied: %+v", f)
	}
	g, err := r.GetFunction(ctx, "t1", "f")
	if err != nil || g.LatestConfigHash != f.LatestConfigHash || !g.Created.Equal(f.Created) {
		t.Fatalf("GetFunction = %+v, %v", g, err)
	}
	if _, err := r.GetFunction(ctx, "t2", "f"); !IsNotFound(err) {
		t.Fatalf("other tenant's function: %v", err)
	}
	if _, err := r.PutFunction(ctx, fn("g")); err != nil {
		t.Fatal(err)
	}
	fs, err := r.ListFunctions(ctx, "t1")
	if err != nil || len(fs) != 2 || fs[0].Name != "f" || fs[1].Name != "g" {
		t.Fatalf("ListFunctions = %+v, %v", fs, err)
	}
	if ok, err := r.HasCode(ctx, "t1", digestA); err != nil || !ok {
		t.Fatalf("HasCode(t1) = %v, %v", ok, err)
	}
	if ok, err := r.HasCode(ctx, "t2", digestA); err != nil || ok {
		t.Fatalf("HasCode(t2) = %v, %v", ok, err)
	}
	if err := r.DeleteFunction(ctx, "t1", "f"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteFunction(ctx, "t1", "f"); err != nil {
		t.Fatalf("deleting a missing function: %v", err)
	}
	if _, err := r.GetFunction(ctx, "t1", "f"); !IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestFunctionValidation(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	r := newReg(t, rdb)
	big := strings.Repeat("x", MaxEnvBytes)
	for name, mod := range map[string]func(*Function){
		"bad name":     func(f *Function) { f.Name = "a/b" },
		"long name":    func(f *Function) { f.Name = strings.Repeat("a", 65) },
		"bad tenant":   func(f *Function) { f.Tenant = "a b" },
		"memory low":   func(f *Function) { f.MemoryMB = 64 },
		"memory high":  func(f *Function) { f.MemoryMB = 10241 },
		"bad sub-pool": func(f *Function) { f.SubPool = "Big Pool" },
		"timeout low":  func(f *Function) { f.Timeout = time.Millisecond },
		"timeout high": func(f *Function) { f.Timeout = 901 * time.Second },
		"no digest":    func(f *Function) { f.CodeDigest = "" },
		"bad digest":   func(f *Function) { f.CodeDigest = "sha256:../../x" },
		"bad env key":  func(f *Function) { f.Env = map[string]string{"1A": "x"} },
		"reserved env": func(f *Function) { f.Env = map[string]string{"AWS_LAMBDA_RUNTIME_API": "x"} },
		"env too big":  func(f *Function) { f.Env = map[string]string{"A": big} },
		"runtime":      func(f *Function) { f.Runtime = "python3.12" },
	} {
		f := fn("f")
		mod(&f)
		if _, err := r.PutFunction(ctx, f); !IsInvalid(err) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestPublishAndResolve(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	r := newReg(t, rdb)
	if _, err := r.PublishVersion(ctx, "t1", "nope"); !IsNotFound(err) {
		t.Fatalf("publish unknown: %v", err)
	}
	f0, _ := r.PutFunction(ctx, fn("f"))
	v1, err := r.PublishVersion(ctx, "t1", "f")
	if err != nil || v1.Version != "1" || v1.CodeDigest != digestA || v1.MemoryMB != 256 || v1.ConfigHash != f0.LatestConfigHash {
		t.Fatalf("publish 1 = %+v, %v", v1, err)
	}
	again, err := r.PublishVersion(ctx, "t1", "f")
	if err != nil || again.Version != "1" || !again.Created.Equal(v1.Created) {
		t.Fatalf("publishing unchanged $LATEST = %+v, %v; want version 1 again", again, err)
	}
	f := fn("f")
	f.CodeDigest = digestB
	f.MemoryMB = 512
	f1, _ := r.PutFunction(ctx, f)
	if !f1.Created.Equal(f0.Created) || len(f1.Versions) != 1 {
		t.Fatalf("update lost Created/Versions: %+v", f1)
	}
	v2, err := r.PublishVersion(ctx, "t1", "f")
	if err != nil || v2.Version != "2" || v2.CodeDigest != digestB {
		t.Fatalf("publish 2 = %+v, %v", v2, err)
	}
	// Version 1 is immutable.
	got1, err := r.Resolve(ctx, "t1", "f", "1")
	if err != nil || got1.CodeDigest != digestA || got1.MemoryMB != 256 || got1.Version != "1" {
		t.Fatalf("resolve 1 = %+v, %v", got1, err)
	}
	for _, q := range []string{"", "$LATEST"} {
		l, err := r.Resolve(ctx, "t1", "f", q)
		if err != nil || l.Version != Latest || l.CodeDigest != digestB || l.MemoryMB != 512 || l.ConfigHash != f1.LatestConfigHash {
			t.Fatalf("resolve %q = %+v, %v", q, l, err)
		}
	}
	if _, err := r.Resolve(ctx, "t1", "f", "3"); !IsNotFound(err) {
		t.Fatalf("resolve 3: %v", err)
	}
	if _, err := r.Resolve(ctx, "t1", "nope", ""); !IsNotFound(err) {
		t.Fatalf("resolve unknown fn: %v", err)
	}
	if _, err := r.Resolve(ctx, "t1", "f", "x"); !IsNotFound(err) {
		t.Fatalf("resolve alias x that does not exist: %v", err)
	}
	for _, q := range []string{"0", "01", "1.0", "$latest", "a b"} {
		if _, err := r.Resolve(ctx, "t1", "f", q); !IsInvalid(err) {
			t.Fatalf("resolve %q: %v, want ErrInvalid", q, err)
		}
	}
	fget, _ := r.GetFunction(ctx, "t1", "f")
	if strings.Join(fget.Versions, ",") != "1,2" {
		t.Fatalf("versions = %v", fget.Versions)
	}
}

// ownTopic records name as tenant's own topic, as the API does after
// creating it in Kafka.
func ownTopic(t *testing.T, r *Registry, tenant, name string) string {
	t.Helper()
	tp, err := r.PutTopic(context.Background(), Topic{Name: TenantTopic(tenant, name), Owner: tenant, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	return tp.Name
}

func TestBindings(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	r := newReg(t, rdb)
	ownTopic(t, r, "t1", "in")
	if _, err := r.PutBinding(ctx, Binding{ID: "b1", Tenant: "t1", Function: "f", Topic: "in"}); !IsNotFound(err) || !strings.Contains(err.Error(), `function "f" not found`) {
		t.Fatalf("binding to missing function: %v", err)
	}
	_, _ = r.PutFunction(ctx, Function{Tenant: "t1", Name: "f", CodeDigest: digestA})
	if _, err := r.PutBinding(ctx, Binding{ID: "b1", Tenant: "t1", Function: "f", Qualifier: "7", Topic: "in"}); !IsNotFound(err) {
		t.Fatalf("binding to missing version: %v", err)
	}
	b, err := r.PutBinding(ctx, Binding{ID: "b1", Tenant: "t1", Function: "f", Topic: "in", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if b.Topic != "t1.in" || b.GroupID != "ember.t1.b1" || b.BatchSize != 100 || b.DLQTopic != "t1.in.dlq" || b.Ordering != "partition" || b.StartingPosition != "latest" {
		t.Fatalf("defaults not applied: %+v", b)
	}
	// The dead-letter topic became t1's own.
	if tp, err := r.GetTopic(ctx, "t1.in.dlq"); err != nil || tp.Owner != "t1" {
		t.Fatalf("dlq topic record = %+v, %v", tp, err)
	}
	for name, bad := range map[string]Binding{
		"batch":      {ID: "b2", Tenant: "t1", Function: "f", Topic: "in", Settings: settings.Settings{BatchSize: 20000}},
		"window":     {ID: "b2", Tenant: "t1", Function: "f", Topic: "in", Settings: settings.Settings{BatchWindow: time.Hour}},
		"start":      {ID: "b2", Tenant: "t1", Function: "f", Topic: "in", Settings: settings.Settings{StartingPosition: "middle"}},
		"loop":       {ID: "b2", Tenant: "t1", Function: "f", Topic: "in", ResultTopic: "t1.in"},
		"id":         {ID: "b 2", Tenant: "t1", Function: "f", Topic: "in"},
		"attempts":   {ID: "b2", Tenant: "t1", Function: "f", Topic: "in", Settings: settings.Settings{MaxRetryAttempts: -1}},
		"filter":     {ID: "b2", Tenant: "t1", Function: "f", Topic: "in", Settings: settings.Settings{Filters: []string{"[1]"}}},
		"long topic": {ID: "b2", Tenant: "t1", Function: "f", Topic: "in", ResultTopic: strings.Repeat("a", 250)},
	} {
		if _, err := r.PutBinding(ctx, bad); !IsInvalid(err) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	// Another tenant can neither read t1's topic nor write to it: a sink
	// named like one of t1's lands in its own namespace.
	_, _ = r.PutFunction(ctx, Function{Tenant: "t2", Name: "f", CodeDigest: digestA})
	for name, bad := range map[string]Binding{
		"read":    {ID: "b1", Tenant: "t2", Function: "f", Topic: "t1.in"},
		"unknown": {ID: "b1", Tenant: "t2", Function: "f", Topic: "nope"},
	} {
		if _, err := r.PutBinding(ctx, bad); !IsNotFound(err) {
			t.Errorf("%s: %v, want ErrNotFound", name, err)
		}
	}
	ownTopic(t, r, "t2", "y")
	for sink, want := range map[string]string{"t1.in": "t2.t1.in", "t1.in.dlq": "t2.t1.in.dlq", "ember.usage": "t2.ember.usage"} {
		b, err := r.PutBinding(ctx, Binding{ID: "s", Tenant: "t2", Function: "f", Topic: "y", ResultTopic: sink, DLQTopic: sink + ".d"})
		if err != nil || b.ResultTopic != want || b.DLQTopic != want+".d" {
			t.Errorf("sink %s = %+v, %v; want %s", sink, b, err, want)
		}
	}
	_ = r.DeleteBinding(ctx, "t2", "s")
	b4, err := r.PutBinding(ctx, Binding{ID: "b1", Tenant: "t2", Function: "f", Topic: "y", ResultTopic: "out"})
	if err != nil || b4.ResultTopic != "t2.out" || b4.GroupID != "ember.t2.b1" {
		t.Fatalf("t2's b1 = %+v, %v", b4, err)
	}
	if err := r.DeleteFunction(ctx, "t1", "f"); !IsConflict(err) || !strings.Contains(err.Error(), "b1") {
		t.Fatalf("delete function with binding: %v", err)
	}
	all, _ := r.ListBindings(ctx, "")
	t1, _ := r.ListBindings(ctx, "t1")
	if len(all) != 2 || len(t1) != 1 || t1[0].ID != "b1" || !t1[0].Enabled {
		t.Fatalf("list all=%+v t1=%+v", all, t1)
	}
	// Rewinds get growing ids; only the binding's tenant may ask.
	if _, err := r.RewindBinding(ctx, "t3", "b1", settings.Rewind{Offsets: map[int]int64{0: 1}}); !IsNotFound(err) {
		t.Fatalf("rewind of another tenant's binding: %v", err)
	}
	if _, err := r.RewindBinding(ctx, "t1", "b1", settings.Rewind{}); !IsInvalid(err) {
		t.Fatalf("rewind to nowhere: %v", err)
	}
	rw1, err := r.RewindBinding(ctx, "t1", "b1", settings.Rewind{To: time.Unix(1000, 0)})
	if err != nil || rw1.Rewind == nil || rw1.Rewind.ID <= 0 || !rw1.Rewind.To.Equal(time.Unix(1000, 0)) {
		t.Fatalf("rewind = %+v, %v", rw1.Rewind, err)
	}
	rw2, err := r.RewindBinding(ctx, "t1", "b1", settings.Rewind{Offsets: map[int]int64{0: 7}})
	if err != nil || rw2.Rewind.ID <= rw1.Rewind.ID || rw2.Rewind.Offsets[0] != 7 {
		t.Fatalf("second rewind = %+v (first %d), %v", rw2.Rewind, rw1.Rewind.ID, err)
	}
	// Update keeps Created and the rewind.
	b2, err := r.PutBinding(ctx, Binding{ID: "b1", Tenant: "t1", Function: "f", Topic: "in", Settings: settings.Settings{BatchSize: 5}})
	if err != nil || !b2.Created.Equal(b.Created) || b2.BatchSize != 5 || b2.Rewind == nil || b2.Rewind.ID != rw2.Rewind.ID {
		t.Fatalf("update = %+v, %v", b2, err)
	}
	if err := r.DeleteBinding(ctx, "t2", "b1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetBinding(ctx, "t1", "b1"); err != nil {
		t.Fatalf("another tenant's delete removed t1's b1: %v", err)
	}
	if _, err := r.GetBinding(ctx, "t2", "b1"); !IsNotFound(err) {
		t.Fatalf("t2's b1 after delete: %v", err)
	}
	if err := r.DeleteBinding(ctx, "t1", "b1"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteBinding(ctx, "t1", "b1"); err != nil {
		t.Fatalf("deleting missing binding: %v", err)
	}
	if err := r.DeleteFunction(ctx, "t1", "f"); err != nil {
		t.Fatalf("delete function after unbinding: %v", err)
	}
}

func TestTopics(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	r := newReg(t, rdb)
	if _, err := r.PutTopic(ctx, Topic{Name: "t2.x", Owner: "t1"}); !IsInvalid(err) {
		t.Fatalf("topic outside the owner's namespace: %v", err)
	}
	own := ownTopic(t, r, "t1", "orders")
	if _, err := r.PutTopic(ctx, Topic{Name: own, Owner: "t2"}); !IsInvalid(err) {
		t.Fatalf("taking t1's topic: %v", err)
	}
	if _, err := r.PutTopic(ctx, Topic{Name: "ember.usage", Owner: SystemOwner}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tenant, name string
		need         Access
		want         string
	}{
		{"t1", "orders", AccessConsume, "t1.orders"},
		{"t1", "t1.orders", AccessProduce, "t1.orders"},
		{"t2", "t1.orders", AccessConsume, ""},
		{"t2", "orders", AccessConsume, ""},
		{"t1", "ember.usage", AccessProduce, ""},
		{"t1", "legacy", AccessConsume, ""},
	} {
		got, err := r.ResolveTopic(ctx, c.tenant, c.name, c.need)
		if got != c.want || (c.want == "") != IsNotFound(err) {
			t.Errorf("ResolveTopic(%s, %s, %s) = %q, %v; want %q", c.tenant, c.name, c.need, got, err, c.want)
		}
	}
	// The administrator grants t2 consume on t1's topic and all on an
	// external topic Ember did not create.
	if err := r.Grant(ctx, own, "t2", AccessConsume); err != nil {
		t.Fatal(err)
	}
	if err := r.Grant(ctx, "legacy", "t2", AccessAll); err != nil {
		t.Fatal(err)
	}
	if err := r.Grant(ctx, "ember.usage", "t2", AccessConsume); !IsInvalid(err) {
		t.Fatalf("granting ember.usage: %v", err)
	}
	if err := r.Grant(ctx, own, "t1", AccessConsume); !IsInvalid(err) {
		t.Fatalf("granting the owner: %v", err)
	}
	if got, err := r.ResolveTopic(ctx, "t2", own, AccessConsume); err != nil || got != own {
		t.Fatalf("granted consume: %q, %v", got, err)
	}
	if _, err := r.ResolveTopic(ctx, "t2", own, AccessProduce); !IsNotFound(err) {
		t.Fatalf("produce under a consume grant: %v", err)
	}
	if got, err := r.ResolveTopic(ctx, "t2", "legacy", AccessProduce); err != nil || got != "legacy" {
		t.Fatalf("granted all: %q, %v", got, err)
	}
	t2, err := r.ListTopics(ctx, "t2")
	if err != nil || len(t2) != 2 || t2[0].Name != "legacy" || t2[1].Name != own || len(t2[1].Grants) != 1 {
		t.Fatalf("t2's topics = %+v, %v", t2, err)
	}
	// A binding made under the grant stops being active when it is withdrawn.
	_, _ = r.PutFunction(ctx, Function{Tenant: "t2", Name: "f", CodeDigest: digestA})
	if _, err := r.PutBinding(ctx, Binding{ID: "b", Tenant: "t2", Function: "f", Topic: own, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	active, skipped, err := r.ActiveBindings(ctx)
	if err != nil || len(active) != 1 || len(skipped) != 0 {
		t.Fatalf("active = %+v, skipped = %v, %v", active, skipped, err)
	}
	if err := r.Ungrant(ctx, own, "t2"); err != nil {
		t.Fatal(err)
	}
	active, skipped, err = r.ActiveBindings(ctx)
	if err != nil || len(active) != 0 || skipped["t2/b"] == "" {
		t.Fatalf("after ungrant: active = %+v, skipped = %v, %v", active, skipped, err)
	}
	// Deleting: only the owner, only when no binding uses it.
	if name, err := r.DeleteTopic(ctx, "t2", own); err != nil || name != "" {
		t.Fatalf("t2 deleting t1's topic = %q, %v", name, err)
	}
	if _, err := r.DeleteTopic(ctx, "t1", "orders"); !IsConflict(err) {
		t.Fatalf("deleting a bound topic: %v", err)
	}
	_ = r.DeleteBinding(ctx, "t2", "b")
	if name, err := r.DeleteTopic(ctx, "t1", "orders"); err != nil || name != own {
		t.Fatalf("DeleteTopic = %q, %v", name, err)
	}
	if _, err := r.ResolveTopic(ctx, "t1", "orders", AccessConsume); !IsNotFound(err) {
		t.Fatalf("deleted topic resolves: %v", err)
	}
}

func TestWatchBindings(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	r := newReg(t, rdb)
	ctx, cancel := context.WithCancel(context.Background())
	ch := r.WatchBindings(ctx)
	recv := func(what string) {
		t.Helper()
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("%s: channel closed", what)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no signal", what)
		}
	}
	recv("initial signal")
	_, _ = r.PutFunction(ctx, fn("f"))
	_, _ = r.PublishVersion(ctx, "t1", "f")
	select {
	case <-ch:
		t.Fatal("function changes must not signal a bindings watch")
	default:
	}
	ownTopic(t, r, "t1", "in")
	recv("put topic")
	if _, err := r.PutBinding(ctx, Binding{ID: "b1", Tenant: "t1", Function: "f", Topic: "in"}); err != nil {
		t.Fatal(err)
	}
	recv("put binding")
	// A second registry on the same Redis (another emberd) deletes it.
	r2 := newReg(t, rdb)
	if err := r2.DeleteBinding(ctx, "t1", "b1"); err != nil {
		t.Fatal(err)
	}
	recv("delete binding from another replica")
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after cancel")
	}
}

func TestCacheInvalidationAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	rdb, addr := testenv.Redis(t)
	rdb2 := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb2.Close() })
	r1 := newReg(t, rdb)
	r2 := newReg(t, rdb2, WithCacheTTL(time.Hour))
	running(t, r1)
	running(t, r2)

	gen := func() uint64 { r2.mu.Lock(); defer r2.mu.Unlock(); return r2.gen }
	before := gen()
	_, _ = r1.PutFunction(ctx, fn("f"))
	v, err := r2.Resolve(ctx, "t1", "f", "")
	if err != nil || v.MemoryMB != 256 {
		t.Fatalf("resolve = %+v, %v", v, err)
	}
	cached := func() bool {
		r2.mu.Lock()
		defer r2.mu.Unlock()
		_, ok := r2.cache["t1 f"]["$LATEST"]
		return ok
	}
	// The put's own invalidation may still be in flight: it would drop
	// what r2 cached before it arrived. Wait for it, then resolve until
	// an entry sticks.
	waitFor(t, "the put's invalidation at replica 2", func() bool { return gen() > before })
	waitFor(t, "resolve to cache while live", func() bool {
		_, _ = r2.Resolve(ctx, "t1", "f", "")
		return cached()
	})
	// Prove a hit does not go to Redis: change the record behind the
	// registry's back (no publish); r2 still answers from its cache.
	sneaky := fn("f")
	sneaky.MemoryMB = 1024
	if _, err := newReg(t, rdb2, WithPrefix("{other}:")).PutFunction(ctx, sneaky); err != nil {
		t.Fatal(err)
	}
	b, _ := rdb2.HGet(ctx, "{other}:fn:t1:f", "fn").Result()
	if err := rdb2.HSet(ctx, "{ember}:reg:fn:t1:f", "fn", b).Err(); err != nil {
		t.Fatal(err)
	}
	if v, _ := r2.Resolve(ctx, "t1", "f", ""); v.MemoryMB != 256 {
		t.Fatalf("cache miss: memory %d, want the cached 256", v.MemoryMB)
	}
	// Now an update through the other replica must reach r2's cache.
	f2 := fn("f")
	f2.MemoryMB = 512
	if _, err := r1.PutFunction(ctx, f2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica 2 to see the update", func() bool {
		v, err := r2.Resolve(ctx, "t1", "f", "")
		return err == nil && v.MemoryMB == 512
	})
	// Delete on r1 makes r2 answer not found.
	if err := r1.DeleteFunction(ctx, "t1", "f"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "replica 2 to see the delete", func() bool {
		_, err := r2.Resolve(ctx, "t1", "f", "")
		return IsNotFound(err)
	})
	// Writes through r2 itself are visible to r2 immediately.
	_, _ = r2.PutFunction(ctx, fn("g"))
	if _, err := r2.Resolve(ctx, "t1", "g", ""); err != nil {
		t.Fatal(err)
	}
	g := fn("g")
	g.MemoryMB = 1024
	_, _ = r2.PutFunction(ctx, g)
	if v, _ := r2.Resolve(ctx, "t1", "g", ""); v.MemoryMB != 1024 {
		t.Fatalf("read-your-writes: memory %d", v.MemoryMB)
	}
}

func TestCacheOffWithoutRun(t *testing.T) {
	ctx := context.Background()
	rdb, _ := testenv.Redis(t)
	r := newReg(t, rdb, WithCacheTTL(time.Hour))
	_, _ = r.PutFunction(ctx, fn("f"))
	_, _ = r.Resolve(ctx, "t1", "f", "")
	if len(r.cache) != 0 {
		t.Fatal("cached without a live subscription")
	}
	// A write by a raw client is seen at once.
	other := newReg(t, rdb)
	f := fn("f")
	f.MemoryMB = 512
	_, _ = other.PutFunction(ctx, f)
	if v, _ := r.Resolve(ctx, "t1", "f", ""); v.MemoryMB != 512 {
		t.Fatal("stale read without cache")
	}
}
