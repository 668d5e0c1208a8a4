package hostagent

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/codefetch"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/hostagent/sandbox"
	"github.com/ember-run/ember/internal/pki"
	"github.com/ember-run/ember/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// zipDir packs every regular file of dir (flat) into a package in the
// content-addressed store at store, and returns its digest.
func zipDir(t testing.TB, dir, store string) string {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "pkg-*.zip")
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		h, err := zip.FileInfoHeader(info)
		if err != nil {
			t.Fatal(err)
		}
		h.Method = zip.Deflate
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	hx := hex.EncodeToString(sum[:])
	if err := os.MkdirAll(filepath.Join(store, "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(store, "sha256", hx+".zip"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hx
}

// searchableTempDir is a temp dir whose ancestors up to /tmp can be
// traversed by an instance's mapped root (runc mounts from inside the
// user namespace).
func searchableTempDir(t testing.TB) string {
	d := t.TempDir()
	for p := d; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// integration is what the agent's integration tests share: a built
// ember-init, real Redis and containerd, a runtime starting instances of
// that ember-init for one agent, and a code store holding examples.
type integration struct {
	rdb     *redis.Client
	pool    *pool.Store
	client  *containerd.Client
	ns      string
	rt      *sandbox.Runtime
	tls     *pki.Pair
	dial    grpc.DialOption
	store   string
	digests []string // of examples, in order
	initBin string   // the ember-init rt's image holds
}

func newIntegration(t *testing.T, agentID string, examples ...string) *integration {
	t.Helper()
	if os.Getuid() != 0 {
		t.Fatal("the integration test needs root (containerd, cgroups, user namespaces)")
	}
	// Builds first: on a cold build cache they take minutes, which the
	// test's own deadline must not count.
	initBin := filepath.Join(t.TempDir(), "ember-init")
	if err := testenv.BuildInit(initBin); err != nil {
		t.Fatal(err)
	}
	it := &integration{store: t.TempDir(), initBin: initBin}
	for _, ex := range examples {
		dir := t.TempDir()
		if err := testenv.Example(ex, dir); err != nil {
			t.Fatal(err)
		}
		it.digests = append(it.digests, zipDir(t, dir, it.store))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	it.rdb, _ = testenv.Redis(t)
	it.client, it.ns = testenv.Containerd(t)
	it.tls, it.dial = testTLS(t, agentID)
	var err error
	if it.rt, err = ContainerdRuntime(ctx, it.client, it.ns, initBin, agentID); err != nil {
		t.Fatal(err)
	}
	if it.pool, err = pool.New(it.rdb); err != nil {
		t.Fatal(err)
	}
	return it
}

// deps are an agent's real collaborators, logging to t.
func (it *integration) deps(t *testing.T) Deps {
	return Deps{
		Redis: it.rdb, Pool: it.pool, Runtime: it.rt, Cgroups: HostCgroups(),
		Code: codefetch.Dir{Root: it.store}, TLS: it.tls.AgentServer(),
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
}

// TestAgentIntegration runs the agent against real Redis, a private
// containerd with the real instance image and ember-init, and the
// kafka-echo example function.
func TestAgentIntegration(t *testing.T) {
	const agentID = "agent-it"
	it := newIntegration(t, agentID, "kafka-echo", "sleep")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client, ns, rt, dial, pst := it.client, it.ns, it.rt, it.dial, it.pool
	digest, sleepDigest := it.digests[0], it.digests[1]

	reg := prometheus.NewRegistry()
	deps := it.deps(t)
	deps.Metrics = reg
	a, err := New(Config{
		AgentID: agentID, ListenAddr: "127.0.0.1:0", StateDir: filepath.Join(searchableTempDir(t), "agent"),
		Pool: map[string]int{"m128": 1, "m256": 1}, MaxInstances: 4,
		InitCPUBoost: 2, InitCPUBoostFor: time.Minute, // Ready, not the bound, must end it
		MappedRootUID:     rt.HostRootUID(),
		HeartbeatInterval: 200 * time.Millisecond, HeartbeatTTL: 5 * time.Second,
	}, deps)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- a.Run(runCtx) }()
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-ctx.Done():
		t.Fatal("agent not ready")
	}
	t.Logf("warming pool of 2 ready in %v", time.Since(t0))
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-done
		}
	}()

	insts, err := pst.Instances(ctx, agentID)
	if err != nil || len(insts) != 2 {
		t.Fatalf("instances in redis after Ready: %+v, %v", insts, err)
	}
	for _, in := range insts {
		checkSysmonSlack(t, in.ID)
		// Booted boosted, the instance has its own quota back once ready.
		mb, err := pool.ClassMemory(in.Class)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(cgroup.Root, "cpu", sandbox.CgroupParent, in.ID, "cpu.cfs_quota_us"))
		if want := fmt.Sprint(sandbox.QuotaUs(sandbox.InstanceVCPU(mb, 0))); err != nil || strings.TrimSpace(string(b)) != want {
			t.Errorf("instance %s (%s): CFS quota %q after its boot, want %s (%v)", in.ID, in.Class, b, want, err)
		}
	}

	conn, err := grpc.NewClient(a.Addr(), dial)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ac := dispatchpb.NewAgentClient(conn)

	vk := pool.VersionKey("acme", "echo", "1")
	claim, ok, err := pst.Claim(ctx, "acme", "m128", vk, time.Now().Add(time.Minute))
	if err != nil || !ok || claim.Kind != pool.KindWarm {
		t.Fatalf("claim: %+v ok=%v err=%v", claim, ok, err)
	}
	payload := []byte(`{"eventSource":"aws:kafka","records":{"orders-0":[{"topic":"orders","partition":0,"offset":7,"value":"aGVsbG8="}]}}`)
	req := &dispatchpb.DispatchRequest{
		InvocationId: "inv-1", InstanceId: claim.InstanceID, Tenant: "acme", Function: "echo",
		Version: "1", CodeDigest: digest, Handler: "bootstrap", MemoryMb: 128, TimeoutMs: 5000,
		Payload: payload,
	}
	t1 := time.Now()
	resp, err := ac.Dispatch(ctx, req)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(a.Config().StateDir, "instances", claim.InstanceID, "log", "init.log"))
		t.Fatalf("first dispatch: %v\ninstance log:\n%s", err, log)
	}
	t.Logf("first dispatch (code delivery + container start) %v, init %v", time.Since(t1), time.Duration(resp.InitDurationNs))
	var out struct {
		Records int      `json:"records"`
		IDs     []string `json:"ids"`
	}
	if resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER {
		t.Fatalf("first dispatch: status %v start %v payload %s log %s", resp.Status, resp.Start, resp.Payload, resp.LogTail)
	}
	if err := json.Unmarshal(resp.Payload, &out); err != nil || out.Records != 1 || !slices.Equal(out.IDs, []string{"hello"}) {
		t.Fatalf("response %s: %v", resp.Payload, err)
	}
	checkUsage(t, "first dispatch", resp.GetUsage())
	checkQuotasPutBack(t, a, claim.InstanceID)
	if err := pst.Release(ctx, claim, vk, true); err != nil {
		t.Fatal(err)
	}

	claim2, ok, err := pst.Claim(ctx, "acme", "m128", vk, time.Now().Add(time.Minute))
	if err != nil || !ok || claim2.Kind != pool.KindHot || claim2.InstanceID != claim.InstanceID {
		t.Fatalf("second claim: %+v ok=%v err=%v", claim2, ok, err)
	}
	var lat []time.Duration
	for i := range 50 {
		req.InvocationId = "inv-hot-" + string(rune('a'+i%26)) + time.Now().Format("150405.000000")
		t2 := time.Now()
		resp, err = ac.Dispatch(ctx, req)
		lat = append(lat, time.Since(t2))
		if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != dispatchpb.StartKind_START_KIND_HOT {
			t.Fatalf("hot dispatch %d: %v %v", i, resp, err)
		}
		checkUsage(t, "hot dispatch", resp.GetUsage())
		checkTiming(t, resp, lat[len(lat)-1])
	}
	slices.Sort(lat)
	t.Logf("hot dispatch round trip over gRPC: p50 %v p99 %v (n=%d)", lat[len(lat)/2], lat[len(lat)*99/100], len(lat))
	// The usage counters count them, and what measuring them cost.
	invs, metering := gathered(t, reg, "ember_usage_invocations_total"), gathered(t, reg, "ember_agent_metering_seconds_total")
	t.Logf("agent metering: %.1f us per invocation", metering/invs*1e6)
	if invs != 51 || metering <= 0 || metering/invs > 1e-3 {
		t.Errorf("usage metrics: %v invocations, want 51; metering %v s, want more than 0 and under 1 ms each", invs, metering)
	}

	// A caller that gives up (a consumer whose partition was revoked, an
	// emberd that died) stops the handler: it must not keep running on
	// records another consumer now owns. The next dispatch of that version
	// gets a new container at once instead of waiting behind the old one.
	sreq := &dispatchpb.DispatchRequest{
		InvocationId: "inv-sleep", InstanceId: claim.InstanceID, Tenant: "acme", Function: "sleep",
		Version: "1", CodeDigest: sleepDigest, Handler: "bootstrap", MemoryMb: 128, TimeoutMs: 120000,
		Payload: []byte(`{"ms":120000}`),
	}
	dctx, dcancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { _, err := ac.Dispatch(dctx, sreq); errc <- err }()
	fnLog := filepath.Join(a.Config().StateDir, "instances", claim.InstanceID, "log", "functions", "functions.log")
	testenv.Eventually(t, 10*time.Second, "the sleep handler started", func() bool {
		b, _ := os.ReadFile(fnLog)
		return bytes.Contains(b, []byte("sleeping 120000 ms"))
	})
	dcancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled dispatch: %v, want Canceled", err)
	}
	sreq.InvocationId, sreq.Payload = "inv-sleep-2", []byte(`{"ms":1}`)
	t3 := time.Now()
	// The caller's side ends at once; the agent answers Aborted (busy)
	// while it stops the cancelled handler's container.
	for {
		resp, err = ac.Dispatch(ctx, sreq)
		if status.Code(err) != codes.Aborted || time.Since(t3) > 10*time.Second {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling the instance until it is free
	}
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER {
		t.Fatalf("dispatch after a cancelled one: %v %v, want ok in a new container", resp, err)
	}
	t.Logf("dispatch after a cancelled one: new container, ok in %v", time.Since(t3))
	if err := pst.Release(ctx, claim2, vk, true); err != nil {
		t.Fatal(err)
	}

	// The claim took the only warm m128: a replacement joins the pool.
	testenv.Eventually(t, 10*time.Second, "m128 refilled", func() bool {
		insts, _ := pst.Instances(ctx, agentID)
		for _, in := range insts {
			if in.Class == "m128" && in.Tenant == "" {
				return true
			}
		}
		return false
	})

	stop()
	stopped = true
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	cs, err := client.Containers(namespaces.WithNamespace(context.Background(), ns))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 0 {
		t.Fatalf("%d containers left in namespace %s after shutdown", len(cs), ns)
	}
	if left, _ := pst.Instances(context.Background(), agentID); len(left) != 0 {
		t.Fatalf("instances left in redis: %+v", left)
	}
}

// checkUsage asserts an invocation's usage measured by eBPF accounting
// (the default): CPU and a memory peak.
func checkUsage(t *testing.T, what string, u *dispatchpb.Usage) {
	t.Helper()
	if u == nil || u.GetCpuNs() <= 0 || u.GetMemoryPeakBytes() <= 0 || u.GetWallNs() <= 0 ||
		u.GetSource() != AccountingEBPF || !u.GetNetworkMeasured() || u.GetMemorySizeMb() != 128 {
		t.Fatalf("%s: usage %v, want eBPF-measured CPU, wall and memory peak", what, u)
	}
	t.Logf("%s usage: cpu %v wall %v peak %d KiB rx %d B tx %d B", what, time.Duration(u.GetCpuNs()),
		time.Duration(u.GetWallNs()), u.GetMemoryPeakBytes()>>10, u.GetRxBytes(), u.GetTxBytes())
}

// checkTiming checks a hot dispatch's timing against its round trip rtt:
// the Invoke was written before the handler started, ember-init's round
// trip holds the handler's run, and the agent's time and that round trip
// fit in rtt.
func checkTiming(t *testing.T, resp *dispatchpb.DispatchResponse, rtt time.Duration) {
	t.Helper()
	tm := resp.GetTiming()
	switch {
	case tm == nil:
		t.Fatal("hot dispatch without timing")
	case tm.InvokeSentUnixNs <= 0 || tm.InvokeSentUnixNs > resp.HandlerStartUnixNs:
		t.Fatalf("invoke sent at %d, handler started at %d", tm.InvokeSentUnixNs, resp.HandlerStartUnixNs)
	case tm.InitRoundTripNs < resp.DurationNs+(resp.HandlerStartUnixNs-tm.InvokeSentUnixNs):
		t.Fatalf("ember-init round trip %d ns, less than the handler's %d ns plus its start %d ns",
			tm.InitRoundTripNs, resp.DurationNs, resp.HandlerStartUnixNs-tm.InvokeSentUnixNs)
	case tm.AgentNs <= 0 || time.Duration(tm.AgentNs+tm.InitRoundTripNs) > rtt:
		t.Fatalf("agent %d ns + ember-init %d ns, round trip %v", tm.AgentNs, tm.InitRoundTripNs, rtt)
	}
}

// gathered sums the values of the counter family name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// checkQuotasPutBack checks that the CPU boost of the starts on instance id
// ended with their runtimes' first GET /next, which came before the
// results: the instance and its containers have their own CFS quotas (128
// MB: 0.1 vCPU for a function, 0.3 for its instance).
func checkQuotasPutBack(t *testing.T, a *Agent, id string) {
	t.Helper()
	a.mu.Lock()
	in := a.insts[id]
	dirs := map[string]string{filepath.Join(cgroup.Root, "cpu", in.cgroupPath): "3000"}
	for _, c := range in.containers {
		dirs[c.cg.Path("cpu")] = "1000"
	}
	a.mu.Unlock()
	if len(dirs) < 2 {
		t.Fatalf("instance %s has no container", id)
	}
	for dir, want := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("%s: CFS quota %s after the start, want %s", dir, got, want)
		}
	}
}
