package hostagent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/codefetch"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/internal/testenv"
)

// BenchmarkHotDispatchAccounting measures hot invocations of the
// kafka-echo example through a real agent (containerd, ember-init), one in
// flight, with each accounting mode. Compare ns/op of ebpf and off:
//
//	go test -run '^$' -bench HotDispatchAccounting -benchtime 2000x ./hostagent/
func BenchmarkHotDispatchAccounting(b *testing.B) {
	hb := newHotBench(b)
	for _, mode := range []string{AccountingOff, AccountingEBPF, AccountingCgroup} {
		b.Run(mode, func(b *testing.B) {
			dispatch, _ := hb.agent(b, mode)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp := dispatch(b, i)
				if (resp.GetUsage() != nil) != (mode != AccountingOff) {
					b.Fatalf("mode %s: usage %v", mode, resp.GetUsage())
				}
			}
		})
	}
}

// hotBench is what the hot-dispatch benchmarks share: Redis, containerd,
// ember-init and the kafka-echo example's code.
type hotBench struct {
	rdb    *redis.Client
	client *containerd.Client
	ns     string
	init   string
	store  string
	digest string
	pool   *pool.Store
}

func newHotBench(b *testing.B) *hotBench {
	if os.Getuid() != 0 {
		b.Fatal("needs root (containerd, cgroups, eBPF)")
	}
	rdb, _ := testenv.Redis(b)
	client, ns := testenv.Containerd(b)
	initBin := filepath.Join(b.TempDir(), "ember-init")
	if err := testenv.BuildInit(initBin); err != nil {
		b.Fatal(err)
	}
	fnDir := b.TempDir()
	if err := testenv.Example("kafka-echo", fnDir); err != nil {
		b.Fatal(err)
	}
	store := b.TempDir()
	digest := zipDir(b, fnDir, store)
	pst, err := pool.New(rdb)
	if err != nil {
		b.Fatal(err)
	}
	return &hotBench{rdb: rdb, client: client, ns: ns, init: initBin, store: store, digest: digest, pool: pst}
}

// agent runs an agent with one m128 instance in its pool and returns a
// dispatch of a hot invocation (after a first, cold one) on that instance,
// and the instance's id. The agent stops when b ends.
func (hb *hotBench) agent(b *testing.B, mode string) (func(b *testing.B, i int) *dispatchpb.DispatchResponse, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	agentID := "agent-bench-" + mode
	tp, dial := testTLS(b, agentID)
	rt, err := ContainerdRuntime(ctx, hb.client, hb.ns, hb.init, agentID)
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(Config{
		AgentID: agentID, ListenAddr: "127.0.0.1:0", StateDir: filepath.Join(searchableTempDir(b), "agent"),
		Pool: map[string]int{"m128": 1}, MaxInstances: 2, MappedRootUID: rt.HostRootUID(), Accounting: mode,
	}, Deps{Redis: hb.rdb, Pool: hb.pool, Runtime: rt, Cgroups: HostCgroups(), Code: codefetch.Dir{Root: hb.store}, TLS: tp.AgentServer(),
		Log: zerolog.New(zerolog.NewTestWriter(b)).Level(zerolog.WarnLevel)})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	b.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	select {
	case <-a.Ready():
	case err := <-done:
		b.Fatalf("Run: %v", err)
	}
	conn, err := grpc.NewClient(a.Addr(), dial)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	ac := dispatchpb.NewAgentClient(conn)
	vk := pool.VersionKey("bench", "echo", "1")
	claim, ok, err := hb.pool.Claim(ctx, "bench", "m128", vk, time.Now().Add(time.Hour))
	if err != nil || !ok {
		b.Fatalf("claim: %v %v", ok, err)
	}
	b.Cleanup(func() { _ = hb.pool.Release(context.Background(), claim, vk, true) })
	req := &dispatchpb.DispatchRequest{
		InvocationId: "warm", InstanceId: claim.InstanceID, Tenant: "bench", Function: "echo",
		Version: "1", CodeDigest: hb.digest, Handler: "bootstrap", MemoryMb: 128, TimeoutMs: 5000,
		Payload: []byte(`{"eventSource":"aws:kafka","records":{"t-0":[{"topic":"t","partition":0,"offset":1,"value":"aGVsbG8="}]}}`),
	}
	if _, err := ac.Dispatch(ctx, req); err != nil {
		b.Fatal(err)
	}
	return func(b *testing.B, i int) *dispatchpb.DispatchResponse {
		req.InvocationId = "inv-" + strconv.Itoa(i)
		resp, err := ac.Dispatch(ctx, req)
		if err != nil || resp.Status != dispatchpb.Status_STATUS_OK {
			b.Fatalf("dispatch: %v %v", resp, err)
		}
		return resp
	}, claim.InstanceID
}

// BenchmarkMeter is the agent's own per-invocation accounting work: Mark
// before and Since after an invocation, on a real container cgroup.
func BenchmarkMeter(b *testing.B) {
	for _, mode := range []string{AccountingEBPF, AccountingCgroup} {
		b.Run(mode, func(b *testing.B) {
			parent := acctParent(b)
			acct := openAccounting(mode, nil, zerolog.Nop())
			defer acct.Close()
			cg, err := HostCgroups().Create(parent, "fn", 0, CgroupLimits{MemoryBytes: 128 << 20})
			if err != nil {
				b.Fatal(err)
			}
			cg.CloseFDs()
			defer cg.Remove()
			m, err := acct.Attach(cg)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				mark, err := m.Mark()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := m.Since(mark); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
