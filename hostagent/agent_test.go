package hostagent

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/codefetch"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/internal/pki"
	"github.com/ember-run/ember/internal/testenv"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

type harness struct {
	t      *testing.T
	tls    *pki.Pair
	agent  *Agent
	rt     *fakeRuntime
	cg     *fakeCgroups
	rdb    *redis.Client
	store  *pool.Store
	client dispatchpb.AgentClient
	digest string
	cancel context.CancelFunc
	done   chan error
}

// zipDigest writes a one-file code package into a content-addressed dir.
func zipDigest(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		h := &zip.FileHeader{Name: name}
		h.SetMode(0o755)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	h := hex.EncodeToString(sum[:])
	if err := os.MkdirAll(filepath.Join(dir, "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sha256", h+".zip"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + h
}

func startHarness(t *testing.T, cfg Config, rt *fakeRuntime) *harness {
	t.Helper()
	return startHarnessNet(t, cfg, rt, nil)
}

// startHarnessNet is startHarness with a network (nil: none).
func startHarnessNet(t *testing.T, cfg Config, rt *fakeRuntime, nw Network) *harness {
	t.Helper()
	rdb, _ := testenv.Redis(t)
	store, err := pool.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	codeDir := t.TempDir()
	digest := zipDigest(t, codeDir, map[string]string{"bootstrap": "#!/bin/sh\n"})
	if rt == nil {
		rt = newFakeRuntime()
	}
	cg := newFakeCgroups()
	cfg.AgentID = "agent-test"
	cfg.ListenAddr = "127.0.0.1:0"
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 50 * time.Millisecond
		cfg.HeartbeatTTL = time.Second
	}
	tp, dial := testTLS(t, cfg.AgentID)
	a, err := New(cfg, Deps{
		Redis: rdb, Pool: store, Runtime: rt, Cgroups: cg, Network: nw,
		Code: codefetch.Dir{Root: codeDir}, TLS: tp.AgentServer(),
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, tls: tp, agent: a, rt: rt, cg: cg, rdb: rdb, store: store, digest: digest, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-h.done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("agent not ready after 10s")
	}
	conn, err := grpc.NewClient(a.Addr(), dial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	h.client = dispatchpb.NewAgentClient(conn)
	t.Cleanup(func() { h.stop() })
	return h
}

// aheadReady reports whether class has an instance defined ahead, its
// definition done.
func (h *harness) aheadReady(class string) bool {
	h.agent.mu.Lock()
	defer h.agent.mu.Unlock()
	ah := h.agent.ahead[class]
	return ah != nil && ah.ready
}

// stop shuts the agent down and checks that it left nothing behind.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Fatal("Run did not return after cancel")
	}
	if n := h.rt.count(); n != 0 {
		h.t.Errorf("%d instances left in the runtime after shutdown", n)
	}
	if n := h.rt.countDefined(); n != 0 {
		h.t.Errorf("%d instances defined ahead left in the runtime after shutdown", n)
	}
	insts, err := h.store.Instances(context.Background(), "agent-test")
	if err != nil || len(insts) != 0 {
		h.t.Errorf("instances left in redis after shutdown: %v, %v", insts, err)
	}
}

func (h *harness) warm(class string) []string {
	insts, err := h.store.Instances(context.Background(), "agent-test")
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, in := range insts {
		if in.Class == class && in.Tenant == "" && !in.Busy {
			out = append(out, in.ID)
		}
	}
	return out
}

func (h *harness) claim(tenant, class, vk string) pool.Claim {
	h.t.Helper()
	c, ok, err := h.store.Claim(context.Background(), tenant, class, vk, time.Now().Add(time.Minute))
	if err != nil || !ok {
		h.t.Fatalf("claim %s/%s: ok=%v err=%v", tenant, class, ok, err)
	}
	return c
}

func (h *harness) req(inst, tenant, fn string, payload string) *dispatchpb.DispatchRequest {
	return &dispatchpb.DispatchRequest{
		InvocationId: "inv-" + fn, InstanceId: inst, Tenant: tenant, Function: fn,
		Version: "1", CodeDigest: h.digest, Handler: "bootstrap", MemoryMb: 128,
		TimeoutMs: 3000, Payload: []byte(payload),
	}
}

func TestAgentDispatchHotAndRefill(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m128": 2}, MaxInstances: 4}, nil)
	if got := h.warm("m128"); len(got) != 2 {
		t.Fatalf("warming pool after Ready: %v, want 2 instances", got)
	}
	ctx := context.Background()
	vk := pool.VersionKey("acme", "echo", "1")

	c := h.claim("acme", "m128", vk)
	if c.Kind != pool.KindWarm || c.Agent != "agent-test" {
		t.Fatalf("claim = %+v", c)
	}
	resp, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != dispatchpb.Status_STATUS_OK || string(resp.Payload) != `{"n":1}` || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER {
		t.Fatalf("first dispatch = %v", resp)
	}
	if resp.InitDurationNs < 1000 {
		t.Fatalf("init duration %d does not include delivery", resp.InitDurationNs)
	}
	// The code was delivered, executable, under the instance's code dir.
	hexd := h.digest[len("sha256:"):]
	st, err := os.Stat(filepath.Join(h.agent.cfg.StateDir, "instances", c.InstanceID, "code", hexd, "bootstrap"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("delivered bootstrap: %v, %v", st, err)
	}
	// The claimed instance left the warming pool: it is refilled.
	testenv.Eventually(t, 10*time.Second, "refill to 2 warm m128", func() bool { return len(h.warm("m128")) == 2 })
	if err := h.store.Release(ctx, c, vk, true); err != nil {
		t.Fatal(err)
	}

	// Second claim for the same version finds it hot.
	c2 := h.claim("acme", "m128", vk)
	if c2.Kind != pool.KindHot || c2.InstanceID != c.InstanceID {
		t.Fatalf("second claim = %+v, want hot on %s", c2, c.InstanceID)
	}
	resp, err = h.client.Dispatch(ctx, h.req(c2.InstanceID, "acme", "echo", `{"n":2}`))
	if err != nil || resp.Start != dispatchpb.StartKind_START_KIND_HOT || string(resp.Payload) != `{"n":2}` {
		t.Fatalf("hot dispatch = %v, %v", resp, err)
	}
	fi := h.rt.get(c.InstanceID)
	if n := len(fi.startedSpecs()); n != 1 {
		t.Fatalf("%d container starts, want 1", n)
	}
	sc := fi.startedSpecs()[0]
	if sc.CodeDir != hexd || sc.FunctionName != "echo" || sc.MemoryMB != 128 {
		t.Fatalf("start spec = %+v", sc)
	}

	// Tenants never share an instance.
	_, err = h.client.Dispatch(ctx, h.req(c.InstanceID, "other", "echo", `{}`))
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("other tenant: %v, want PermissionDenied", err)
	}
	_, err = h.client.Dispatch(ctx, h.req("inope", "acme", "echo", `{}`))
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown instance: %v, want NotFound", err)
	}
	bad := h.req(c.InstanceID, "acme", "echo", `{}`)
	bad.CodeDigest = "sha256:zz"
	if _, err := h.client.Dispatch(ctx, bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad digest: %v, want InvalidArgument", err)
	}

	// A crash is a normal response, and the next invocation works.
	resp, err = h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `crash`))
	if err != nil || resp.Status != dispatchpb.Status_STATUS_CRASHED {
		t.Fatalf("crash = %v, %v", resp, err)
	}
	resp, err = h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{"n":3}`))
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER {
		t.Fatalf("after crash = %v, %v (want OK on a respawned process)", resp, err)
	}
	h.stop()
	if h.cg.live() != 0 {
		t.Fatalf("%d container cgroups left", h.cg.live())
	}
}

func TestAgentEvictsLRUContainers(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m256": 1}, MaxContainersPerInstance: 2}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m256", "")
	for _, fn := range []string{"f1", "f2", "f1", "f3"} { // f2 is least recently used when f3 starts
		if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", fn, `{}`)); err != nil {
			t.Fatal(err)
		}
	}
	fi := h.rt.get(c.InstanceID)
	started := fi.startedSpecs()
	var names []string
	for _, s := range started {
		names = append(names, s.FunctionName)
	}
	if !slices.Equal(names, []string{"f1", "f2", "f3"}) {
		t.Fatalf("started %v", names)
	}
	// Evicted containers stop beside the dispatch that evicted them.
	testenv.Eventually(t, 10*time.Second, "f2's container stopped", func() bool { return len(fi.stoppedIDs()) == 1 && h.cg.live() == 2 })
	if stopped := fi.stoppedIDs(); stopped[0] != started[1].ContainerID {
		t.Fatalf("stopped %v, want only f2's %s", stopped, started[1].ContainerID)
	}
	// f2 runs again: a new container, evicting f1 (now the LRU).
	resp, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "f2", `{}`))
	if err != nil || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER {
		t.Fatalf("f2 again = %v, %v", resp, err)
	}
	testenv.Eventually(t, 10*time.Second, "f1's container stopped", func() bool { return len(fi.stoppedIDs()) == 2 })
	if stopped := fi.stoppedIDs(); stopped[1] != started[0].ContainerID {
		t.Fatalf("stopped %v, want f1's %s second", stopped, started[0].ContainerID)
	}
}

// TestSupersededContainerStopsAside: new code for a version starts a new
// container; the old one's stop does not hold up the new one's first
// invocation (the fake ember-init answers a stop only when released).
func TestSupersededContainerStopsAside(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m256": 1}}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m256", "")
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "f1", `{}`)); err != nil {
		t.Fatal(err)
	}
	fi := h.rt.get(c.InstanceID)
	release := fi.holdStops()
	req := h.req(c.InstanceID, "acme", "f1", `{}`)
	req.Env = map[string]string{"NEW": "settings"}           // a new container key for the same version
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a stop on the path would hang here
	defer cancel()
	resp, err := h.client.Dispatch(dctx, req)
	if err != nil || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER || resp.Status != dispatchpb.Status_STATUS_OK {
		t.Fatalf("dispatch with new settings while the old container's stop hangs = %v, %v", resp, err)
	}
	if n := len(fi.stoppedIDs()); n != 0 {
		t.Fatalf("%d containers stopped while stops were held", n)
	}
	release()
	started := fi.startedSpecs()
	testenv.Eventually(t, 10*time.Second, "the old container stopped", func() bool { return len(fi.stoppedIDs()) == 1 && h.cg.live() == 1 })
	if got := fi.stoppedIDs()[0]; got != started[0].ContainerID {
		t.Fatalf("stopped %s, want the old container %s", got, started[0].ContainerID)
	}
	want := []string{"invoke " + started[0].ContainerID, "invoke " + started[1].ContainerID, "stop " + started[0].ContainerID}
	if got := fi.eventLog(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// TestSecondDispatchBeside: while an invocation runs on an instance, a
// dispatch of another version whose memory fits beside it runs at once in
// a second container; one of the same container, or one that does not
// fit, is Aborted; the busy
// container is not evicted meanwhile (one container per instance here),
// and a new configuration of its version supersedes it only once its
// invocation ended.
func TestSecondDispatchBeside(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m512": 1}, MaxContainersPerInstance: 1}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m512", "")
	fi := h.rt.get(c.InstanceID)
	release := fi.holdInvokes()
	first := make(chan error, 1)
	go func() {
		resp, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "f1", "hold"))
		if err == nil && resp.Status != dispatchpb.Status_STATUS_OK {
			err = fmt.Errorf("status %v", resp.Status)
		}
		first <- err
	}()
	testenv.Eventually(t, 10*time.Second, "the first invocation running", func() bool { return len(fi.eventLog()) == 1 })

	// The same version (its container is busy): one invocation per container.
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "f1", `{}`)); status.Code(err) != codes.Aborted {
		t.Fatalf("a second invocation of the running container: %v, want Aborted", err)
	}
	v2 := h.req(c.InstanceID, "acme", "f1", `{}`)
	v2.Version = "2"
	resp, err := h.client.Dispatch(ctx, v2)
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER {
		t.Fatalf("second version beside the running one: %v %v", resp, err)
	}
	big := h.req(c.InstanceID, "acme", "f2", `{}`)
	big.MemoryMb = 512
	if _, err := h.client.Dispatch(ctx, big); status.Code(err) != codes.Aborted {
		t.Fatalf("a dispatch the memory cannot hold beside the running one: %v, want Aborted", err)
	}
	newer := h.req(c.InstanceID, "acme", "f1", `{}`)
	newer.Env = map[string]string{"NEW": "settings"} // supersedes the running container
	if _, err := h.client.Dispatch(ctx, newer); err != nil {
		t.Fatal(err)
	}
	started := fi.startedSpecs()
	if slices.Contains(fi.stoppedIDs(), started[0].ContainerID) {
		t.Fatal("the running container was stopped")
	}
	release()
	if err := <-first; err != nil {
		t.Fatalf("the first invocation: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "the superseded container stopped after its invocation", func() bool {
		return slices.Contains(fi.stoppedIDs(), started[0].ContainerID)
	})
}

// TestStopFirstWhenMemoryShort: when the old and the
// new container together would not fit the instance's memory, the old one
// stops before the new one's first invocation.
func TestStopFirstWhenMemoryShort(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m256": 1}}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m256", "")
	req := h.req(c.InstanceID, "acme", "f1", `{}`)
	req.MemoryMb = 256
	if _, err := h.client.Dispatch(ctx, req); err != nil {
		t.Fatal(err)
	}
	req.Env = map[string]string{"NEW": "settings"}
	if _, err := h.client.Dispatch(ctx, req); err != nil {
		t.Fatal(err)
	}
	fi := h.rt.get(c.InstanceID)
	started := fi.startedSpecs()
	want := []string{"invoke " + started[0].ContainerID, "stop " + started[0].ContainerID, "invoke " + started[1].ContainerID}
	if got := fi.eventLog(); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestAgentReplacesBrokenInstance(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m128", "")
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatal(err)
	}
	_, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `die`))
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("dispatch to a dying instance: %v, want FailedPrecondition (the agent itself is fine)", err)
	}
	testenv.Eventually(t, 10*time.Second, "broken instance destroyed", func() bool { return h.rt.get(c.InstanceID) == nil })
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); status.Code(err) != codes.NotFound {
		t.Fatalf("dispatch to a destroyed instance: %v, want NotFound", err)
	}
	insts, _ := h.store.Instances(ctx, "agent-test")
	for _, in := range insts {
		if in.ID == c.InstanceID {
			t.Fatal("broken instance still in redis")
		}
	}
	testenv.Eventually(t, 10*time.Second, "a replacement in the warming pool", func() bool { return len(h.warm("m128")) == 1 })

	// An instance whose init dies while idle is noticed too.
	w := h.warm("m128")[0]
	h.rt.get(w).close()
	testenv.Eventually(t, 10*time.Second, "idle broken instance replaced", func() bool {
		ws := h.warm("m128")
		return len(ws) == 1 && ws[0] != w && h.rt.get(w) == nil
	})
}

// An instance a scheduler dropped from Redis (after a failed dispatch) can
// never be claimed again: the agent destroys it and refills the pool.
func TestAgentDestroysInstanceDroppedFromRedis(t *testing.T) {
	h := startHarness(t, Config{
		Pool:               map[string]int{"m128": 1},
		ContainerKeepAlive: 200 * time.Millisecond,
		InstanceKeepAlive:  time.Hour,
	}, nil)
	ctx := context.Background()
	w := h.warm("m128")[0]
	if gone, err := h.store.Retire(ctx, w, true); err != nil || !gone {
		t.Fatalf("drop from redis: %v %v", gone, err)
	}
	testenv.Eventually(t, 10*time.Second, "dropped instance destroyed and replaced", func() bool {
		ws := h.warm("m128")
		return h.rt.get(w) == nil && len(ws) == 1 && ws[0] != w
	})
}

func TestAgentReclaimsIdle(t *testing.T) {
	h := startHarness(t, Config{
		Pool:               map[string]int{"m128": 1},
		ContainerKeepAlive: 150 * time.Millisecond,
		InstanceKeepAlive:  600 * time.Millisecond,
	}, nil)
	ctx := context.Background()
	vk := pool.VersionKey("acme", "echo", "1")
	c := h.claim("acme", "m128", vk)
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Release(ctx, c, vk, true); err != nil {
		t.Fatal(err)
	}
	hot := func() []string {
		insts, _ := h.store.Instances(ctx, "agent-test")
		for _, in := range insts {
			if in.ID == c.InstanceID {
				return in.Hot
			}
		}
		return nil
	}
	if len(hot()) != 1 {
		t.Fatalf("hot after release: %v", hot())
	}
	fi := h.rt.get(c.InstanceID)
	testenv.Eventually(t, 10*time.Second, "idle container stopped", func() bool { return len(fi.stoppedIDs()) == 1 })
	if len(hot()) != 0 {
		t.Fatalf("hot after the container stopped: %v", hot())
	}
	if n, _ := h.rdb.SCard(ctx, "{ember}:hot:"+vk).Result(); n != 0 {
		t.Fatalf("hot set still has %d members", n)
	}
	testenv.Eventually(t, 10*time.Second, "idle instance retired and destroyed", func() bool { return h.rt.get(c.InstanceID) == nil })
	insts, _ := h.store.Instances(ctx, "agent-test")
	if len(insts) != 1 || insts[0].Tenant != "" {
		t.Fatalf("after reclaim redis holds %+v, want one warm instance", insts)
	}
}

func TestAgentKeepsClaimedInstanceOnReclaim(t *testing.T) {
	h := startHarness(t, Config{
		Pool:               map[string]int{"m128": 1},
		ContainerKeepAlive: time.Hour,
		InstanceKeepAlive:  100 * time.Millisecond,
	}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m128", "")
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatal(err)
	}
	// Still claimed (a scheduler holds it between invocations): Retire says
	// no, the instance must survive several reclaim rounds.
	deadline := time.Now().Add(600 * time.Millisecond)
	for time.Now().Before(deadline) {
		if h.rt.get(c.InstanceID) == nil {
			t.Fatal("a claimed instance was destroyed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatalf("claimed instance unusable after reclaim rounds: %v", err)
	}
}

func TestAgentDemandAndStaleCleanup(t *testing.T) {
	rt := newFakeRuntime()
	rt.stale = []string{"iold1", "iold2"}
	// No instance is idle long enough to give its room (room_test.go).
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}, MaxInstances: 2, RoomMinIdle: time.Hour}, rt)
	if !slices.Contains(rt.destroyed, "iold1") || !slices.Contains(rt.destroyed, "iold2") {
		t.Fatalf("stale instances not destroyed: %v", rt.destroyed)
	}
	ctx := context.Background()
	if err := h.store.RequestInstance(ctx, "m512", ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "an m512 instance on demand", func() bool { return len(h.warm("m512")) == 1 })
	// MaxInstances is 2: further demand is refused.
	if err := h.store.RequestInstance(ctx, "m1024", ""); err != nil {
		t.Fatal(err)
	}
	if err := h.store.RequestInstance(ctx, "m512", ""); err != nil {
		t.Fatal(err)
	}
	c := h.claim("acme", "m512", "")
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatal(err)
	}
	if n := rt.count(); n != 2 {
		t.Fatalf("%d instances, want 2 (MaxInstances)", n)
	}
}

func TestAgentReregistersAfterExpiry(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m128": 2}, HeartbeatInterval: 100 * time.Millisecond, HeartbeatTTL: 5 * time.Second}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m128", "")
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatal(err)
	}
	vk := pool.VersionKey("acme", "echo", "1")
	if err := h.store.Release(ctx, c, vk, true); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "refill", func() bool { return len(h.warm("m128")) == 2 })
	// Redis loses everything about the agent (as after a long pause, or a
	// restart without persistence).
	if err := h.store.RemoveAgent(ctx, "agent-test"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "warm instances re-added", func() bool { return len(h.warm("m128")) == 2 })
	// The tenant's instance goes back to its active pool, its version hot.
	if _, err := h.store.Agent(ctx, "agent-test"); err != nil {
		t.Fatalf("agent not registered again: %v", err)
	}
	testenv.Eventually(t, 10*time.Second, "tenant instance back in Redis", func() bool {
		insts, _ := h.store.Instances(ctx, "agent-test")
		for _, in := range insts {
			if in.ID == c.InstanceID && in.Tenant == "acme" {
				return true
			}
		}
		return false
	})
	back := h.claim("acme", "m128", vk)
	if back.InstanceID != c.InstanceID || back.Kind != pool.KindHot {
		t.Fatalf("claim after re-registration %+v, want %s hot", back, c.InstanceID)
	}
	if h.rt.get(c.InstanceID) == nil {
		t.Fatal("the tenant's instance was destroyed")
	}
}

func TestLRUVictims(t *testing.T) {
	t0 := time.Now()
	cs := map[string]*container{
		"a": {key: "a", lastUsed: t0.Add(1)},
		"b": {key: "b", lastUsed: t0.Add(3)},
		"c": {key: "c", lastUsed: t0},
		"d": {key: "d", lastUsed: t0.Add(2)},
	}
	keys := func(v []*container) (out []string) {
		for _, c := range v {
			out = append(out, c.key)
		}
		return out
	}
	if got := keys(lruVictims(cs, 4, "a")); len(got) != 0 {
		t.Fatalf("at the limit: %v", got)
	}
	if got := keys(lruVictims(cs, 2, "d")); !slices.Equal(got, []string{"c", "a"}) {
		t.Fatalf("victims = %v", got)
	}
	if got := keys(lruVictims(cs, 2, "c")); !slices.Equal(got, []string{"a", "d"}) {
		t.Fatalf("victims keeping the oldest = %v", got)
	}
	if got := keys(idleContainers(cs, t0.Add(2))); !slices.Equal(got, []string{"c", "a"}) {
		t.Fatalf("idle = %v", got)
	}
}

func TestContainerKey(t *testing.T) {
	base := containerKey("t/f/1", "sha256:aa", "h", "egress", 128, 1000, map[string]string{"A": "1", "B": "2"})
	if base != containerKey("t/f/1", "sha256:aa", "h", "egress", 128, 1000, map[string]string{"B": "2", "A": "1"}) {
		t.Fatal("key depends on map order")
	}
	for _, other := range []string{
		containerKey("t/f/2", "sha256:aa", "h", "egress", 128, 1000, map[string]string{"A": "1", "B": "2"}),
		containerKey("t/f/1", "sha256:bb", "h", "egress", 128, 1000, map[string]string{"A": "1", "B": "2"}),
		containerKey("t/f/1", "sha256:aa", "h", "egress", 256, 1000, map[string]string{"A": "1", "B": "2"}),
		containerKey("t/f/1", "sha256:aa", "h", "egress", 128, 1000, map[string]string{"A": "1", "B": "3"}),
		containerKey("t/f/1", "sha256:aa", "h", "egress", 128, 1000, map[string]string{"A": "1B", "": "2"}),
		containerKey("t/f/1", "sha256:aa", "h", "none", 128, 1000, map[string]string{"A": "1", "B": "2"}),
	} {
		if other == base {
			t.Fatal("different settings share a container key")
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{AgentID: "a", StateDir: "/tmp/x"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	d := good.WithDefaults()
	if d.ListenAddr != DefaultListenAddr || d.MaxInstances != 32 || d.Pool["m128"] != 4 || d.ContainerKeepAlive != 10*time.Minute ||
		d.InstanceKeepAlive != 15*time.Minute || d.MaxContainersPerInstance != 4 || d.HeartbeatTTL != 10*time.Second ||
		d.InstancesCPUShares != DefaultInstancesCPUShares || d.InitCPUBoost != 0 || d.InitCPUBoostFor != time.Second {
		t.Fatalf("defaults = %+v", d)
	}
	for name, c := range map[string]Config{
		"relative state dir": {AgentID: "a", StateDir: "rel"},
		"bad class":          {AgentID: "a", StateDir: "/x", Pool: map[string]int{"big": 1}},
		"pool over max":      {AgentID: "a", StateDir: "/x", Pool: map[string]int{"m128": 5}, MaxInstances: 4},
		"ttl below interval": {AgentID: "a", StateDir: "/x", HeartbeatInterval: 5 * time.Second, HeartbeatTTL: time.Second},
		"instances' weight":  {AgentID: "a", StateDir: "/x", InstancesCPUShares: 262145},
		"negative boost":     {AgentID: "a", StateDir: "/x", InitCPUBoost: -1},
		"boost over a host":  {AgentID: "a", StateDir: "/x", InitCPUBoost: 257},
		"boost for an hour":  {AgentID: "a", StateDir: "/x", InitCPUBoost: 1, InitCPUBoostFor: time.Hour},
		"boost NaN":          {AgentID: "a", StateDir: "/x", InitCPUBoost: math.NaN()},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

func TestDefaultPoolSpecMatchesDefaultPool(t *testing.T) {
	got, err := ParsePool(DefaultPoolSpec)
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultPool()
	if len(got) != len(want) {
		t.Fatalf("ParsePool(DefaultPoolSpec) = %v, DefaultPool() = %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("ParsePool(DefaultPoolSpec) = %v, DefaultPool() = %v", got, want)
		}
	}
	if _, err := ParsePool("m128=x"); err == nil {
		t.Fatal("bad count accepted")
	}
	if _, err := ParsePool("big=1"); err == nil {
		t.Fatal("bad class accepted")
	}
}

// TestDispatchNeedsEmberdCertificate: the agent serves dispatches only to
// clients with an emberd certificate of its authority.
func TestDispatchNeedsEmberdCertificate(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}}, nil)
	ctx := context.Background()
	c := h.claim("acme", "m128", pool.VersionKey("acme", "echo", "1"))
	foreign, err := pki.NewPair("agent-test")
	if err != nil {
		t.Fatal(err)
	}
	own := h.tls
	agentCert, _ := own.CA.Issue(pki.RoleAgent, "another-agent")
	for name, cfg := range map[string]*tls.Config{
		"no certificate":       pki.ClientConfig(tls.Certificate{}, own.Roots(), pki.RoleAgent, "agent-test"),
		"emberd of another CA": pki.ClientConfig(foreign.Emberd, own.Roots(), pki.RoleAgent, "agent-test"),
		"an agent, not emberd": pki.ClientConfig(agentCert, own.Roots(), pki.RoleAgent, "agent-test"),
	} {
		if name == "no certificate" {
			cfg.Certificates = nil
		}
		conn, err := grpc.NewClient(h.agent.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = dispatchpb.NewAgentClient(conn).Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`))
		conn.Close()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("%s: dispatch answered %v, want a refused connection", name, err)
		}
	}
	if f := h.rt.get(c.InstanceID); f != nil {
		f.mu.Lock()
		n := f.invoked
		f.mu.Unlock()
		if n != 0 {
			t.Fatalf("%d invocations reached the instance", n)
		}
	}
	if _, err := h.client.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`)); err != nil {
		t.Fatalf("emberd's own dispatch: %v", err)
	}
}
