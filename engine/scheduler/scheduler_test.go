package scheduler_test

import (
	"context"
	"crypto/tls"
	"errors"
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/scheduler"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/internal/pki"
	"github.com/ember-run/ember/internal/testenv"
)

// resolver serves fixed versions.
type resolver map[string]registry.Version

func (r resolver) Resolve(_ context.Context, tenant, fn, _ string) (registry.Version, error) {
	v, ok := r[tenant+"/"+fn]
	if !ok {
		return registry.Version{}, registry.ErrNotFound
	}
	return v, nil
}

// agent is a real gRPC Agent server: it remembers which versions it started
// on which instance and answers like the host agent does.
type agent struct {
	dispatchpb.UnimplementedAgentServer
	mu      sync.Mutex
	started map[string]bool // instance/function
	lost    map[string]bool // instances to answer NotFound for
	aborted map[string]bool // instances to answer Aborted for (busy, fine otherwise)
	fail    bool
	// timed: each dispatch takes 6 ms and reports a timing (see
	// TestStagesAddUp).
	timed    bool
	requests []*dispatchpb.DispatchRequest
}

func (a *agent) Dispatch(_ context.Context, r *dispatchpb.DispatchRequest) (*dispatchpb.DispatchResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.requests = append(a.requests, r)
	if a.lost[r.InstanceId] {
		return nil, status.Error(codes.NotFound, "no such instance")
	}
	if a.aborted[r.InstanceId] {
		return nil, status.Error(codes.Aborted, "instance busy")
	}
	resp := &dispatchpb.DispatchResponse{Status: dispatchpb.Status_STATUS_OK, Payload: r.Payload,
		HandlerStartUnixNs: time.Now().UnixNano(), Start: dispatchpb.StartKind_START_KIND_HOT}
	if a.fail {
		resp.Status, resp.ErrorType = dispatchpb.Status_STATUS_FUNCTION_ERROR, "Boom"
	}
	if a.timed {
		// 1 ms in the agent, 1 ms to the handler, 3 ms in it, 1 ms back.
		sent := time.Now()
		time.Sleep(6 * time.Millisecond) // the time the timing accounts for
		resp.HandlerStartUnixNs, resp.DurationNs = sent.Add(time.Millisecond).UnixNano(), int64(3*time.Millisecond)
		resp.Timing = &dispatchpb.Timing{AgentNs: int64(time.Millisecond), InvokeSentUnixNs: sent.UnixNano(),
			InitRoundTripNs: int64(5 * time.Millisecond)}
	}
	key := r.InstanceId + "/" + r.Function
	if !a.started[key] {
		a.started[key] = true
		resp.Start = dispatchpb.StartKind_START_KIND_CONTAINER
	}
	return resp, nil
}

type env struct {
	rdb   *redis.Client
	tls   *pki.Pair
	pool  *pool.Store
	agent *agent
	sched *scheduler.Scheduler
	res   resolver
	cfg   scheduler.Config
}

func setup(t testing.TB, cfg scheduler.Config) *env {
	t.Helper()
	rdb, _ := testenv.Redis(t)
	p, err := pool.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{started: map[string]bool{}, lost: map[string]bool{}, aborted: map[string]bool{}}
	tp, err := pki.NewPair("a1")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(tp.AgentServer())))
	dispatchpb.RegisterAgentServer(srv, a)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	if err := p.RegisterAgent(ctx, pool.Agent{ID: "a1", Addr: l.Addr().String()}, time.Minute); err != nil {
		t.Fatal(err)
	}
	r := resolver{
		"t1/f": {Tenant: "t1", Function: "f", Version: "$LATEST", MemoryMB: 128, Timeout: 5 * time.Second, CodeDigest: "sha256:00"},
		"t1/g": {Tenant: "t1", Function: "g", Version: "1", MemoryMB: 128, Timeout: 5 * time.Second, CodeDigest: "sha256:01"},
	}
	e := &env{rdb: rdb, pool: p, agent: a, tls: tp, res: r, cfg: cfg}
	e.sched = e.replica(t)
	return e
}

// replica starts another scheduler on the same pool: another emberd.
func (e *env) replica(t testing.TB, opts ...scheduler.Option) *scheduler.Scheduler {
	t.Helper()
	s, err := scheduler.New(e.cfg, e.pool, e.res, append([]scheduler.Option{scheduler.WithTLS(e.tls.Emberd, e.tls.Roots())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

// answerDemand plays the agent's part on the demand channel: when a
// scheduler asks for an instance, instance id is added to the asked class.
// The subscription is confirmed before it returns, so no request is missed.
func (e *env) answerDemand(ctx context.Context, t *testing.T, id string) {
	t.Helper()
	sub := e.pool.SubscribeDemand(ctx)
	t.Cleanup(func() { sub.Close() })
	if _, err := sub.Receive(ctx); err != nil { // subscription confirmation
		t.Fatal(err)
	}
	go func() {
		if msg, ok := <-sub.Channel(); ok {
			_ = e.pool.AddWarm(ctx, id, "a1", msg.Payload)
		}
	}()
}

func (e *env) invoke(t *testing.T, fn string) invoke.Result {
	t.Helper()
	res, err := e.sched.Invoke(context.Background(), &invoke.Invocation{Tenant: "t1", Function: fn, Payload: []byte(`{"x":1}`)})
	if err != nil {
		t.Fatalf("invoke %s: %v", fn, err)
	}
	return res
}

func TestPoolHitThenHot(t *testing.T) {
	e := setup(t, scheduler.Config{})
	if err := e.pool.AddWarm(context.Background(), "i1", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	r1 := e.invoke(t, "f")
	if r1.Start != invoke.StartPoolHit || r1.Instance != "i1" || !r1.OK() || string(r1.Payload) != `{"x":1}` {
		t.Fatalf("first invoke %+v", r1)
	}
	r2 := e.invoke(t, "f")
	if r2.Start != invoke.StartHot || r2.Instance != "i1" {
		t.Fatalf("second invoke %+v, want hot on i1", r2)
	}
	req := e.agent.requests[0]
	if req.Tenant != "t1" || req.Version != "$LATEST" || req.CodeDigest != "sha256:00" || req.TimeoutMs != 5000 || req.DeadlineUnixMs == 0 {
		t.Fatalf("dispatch request %+v", req)
	}
}

func TestFunctionErrorIsAResult(t *testing.T) {
	e := setup(t, scheduler.Config{})
	_ = e.pool.AddWarm(context.Background(), "i1", "a1", "m128")
	e.agent.mu.Lock()
	e.agent.fail = true
	e.agent.mu.Unlock()
	r := e.invoke(t, "f")
	if r.Status != invoke.StatusFunctionError || r.ErrorType != "Boom" {
		t.Fatalf("got %+v", r)
	}
	// The instance went back to the pool.
	if r2 := e.invoke(t, "f"); r2.Instance != "i1" {
		t.Fatalf("instance not released: %+v", r2)
	}
}

func TestWaitsForDemandedInstance(t *testing.T) {
	e := setup(t, scheduler.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e.answerDemand(ctx, t, "new")
	r := e.invoke(t, "f")
	if r.Start != invoke.StartCold || r.Instance != "new" {
		t.Fatalf("got %+v, want cold start on the demanded instance", r)
	}
}

func TestDeadlineAndBoundedQueue(t *testing.T) {
	e := setup(t, scheduler.Config{MaxWaiting: 1})
	ctx := context.Background()
	// One invocation waits (nothing is ever added) ...
	waiting := make(chan error, 1)
	go func() {
		_, err := e.sched.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: "f", Deadline: time.Now().Add(3 * time.Second)})
		waiting <- err
	}()
	// ... so once it is queued, a second is refused at once.
	for deadline := time.Now().Add(3 * time.Second); e.sched.Waiting() != 1; {
		if time.Now().After(deadline) {
			t.Fatal("first invocation never queued")
		}
		time.Sleep(time.Millisecond) // polling observable state, not guessing a duration
	}
	_, err := e.sched.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: "g", Deadline: time.Now().Add(time.Second)})
	if !errors.Is(err, scheduler.ErrResourceExhausted) {
		t.Fatalf("second waiter: %v, want ErrResourceExhausted", err)
	}
	if err := <-waiting; !errors.Is(err, scheduler.ErrNoCapacity) {
		t.Fatalf("first waiter: %v, want ErrNoCapacity", err)
	}
}

func TestLostInstanceRetriesElsewhere(t *testing.T) {
	e := setup(t, scheduler.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = e.pool.AddWarm(ctx, "gone", "a1", "m128")
	e.agent.mu.Lock()
	e.agent.lost["gone"] = true
	e.agent.mu.Unlock()
	// After the lost instance is dropped, the retry waits and asks for a new one.
	e.answerDemand(ctx, t, "ok")
	r := e.invoke(t, "f")
	if r.Instance != "ok" {
		t.Fatalf("ran on %s, want the replacement", r.Instance)
	}
	insts, _ := e.pool.Instances(ctx, "a1")
	for _, in := range insts {
		if in.ID == "gone" {
			t.Fatal("lost instance still in the pool")
		}
	}
}

func TestUnknownFunction(t *testing.T) {
	e := setup(t, scheduler.Config{})
	_, err := e.sched.Invoke(context.Background(), &invoke.Invocation{Tenant: "t1", Function: "nope"})
	if !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}

// An instance that answers Aborted (busy, code delivery hiccup) is skipped
// for this invocation but stays in the pool.
func TestAbortedInstanceIsKept(t *testing.T) {
	e := setup(t, scheduler.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = e.pool.AddWarm(ctx, "busy", "a1", "m128")
	e.agent.mu.Lock()
	e.agent.aborted["busy"] = true
	e.agent.mu.Unlock()
	e.answerDemand(ctx, t, "other")
	if r := e.invoke(t, "f"); r.Instance != "other" {
		t.Fatalf("ran on %s, want the other instance", r.Instance)
	}
	insts, _ := e.pool.Instances(ctx, "a1")
	found := false
	for _, in := range insts {
		found = found || (in.ID == "busy" && !in.Busy)
	}
	if !found {
		t.Fatalf("the aborted instance left the pool: %+v", insts)
	}
}

// TestImpostorAgentGetsNothing: an agent whose certificate is not from
// emberd's authority (or names another agent) registers in Redis; the
// scheduler refuses the TLS handshake, so no request reaches it, and the
// invocation fails as a platform error.
func TestImpostorAgentGetsNothing(t *testing.T) {
	ctx := context.Background()
	e := setup(t, scheduler.Config{MaxQueueWait: time.Second, DispatchAttempts: 1})
	for name, agentID := range map[string]string{"foreign authority": "a2", "other agent's name": "a3"} {
		var srvTLS *tls.Config
		if agentID == "a2" {
			other, err := pki.NewPair("a2")
			if err != nil {
				t.Fatal(err)
			}
			srvTLS = other.AgentServer()
		} else {
			// A genuine agent certificate of the authority, for "a1",
			// presented by whoever registered as "a3".
			srvTLS = e.tls.AgentServer()
		}
		imp := &agent{started: map[string]bool{}, lost: map[string]bool{}, aborted: map[string]bool{}}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(srvTLS)))
		dispatchpb.RegisterAgentServer(srv, imp)
		go func() { _ = srv.Serve(l) }()
		if err := e.pool.RegisterAgent(ctx, pool.Agent{ID: agentID, Addr: l.Addr().String()}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := e.pool.AddWarm(ctx, "i-"+agentID, agentID, "m128"); err != nil {
			t.Fatal(err)
		}
		_, err = e.sched.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: "f", Payload: []byte(`{}`)})
		if err == nil {
			t.Errorf("%s: invocation succeeded", name)
		}
		imp.mu.Lock()
		n := len(imp.requests)
		imp.mu.Unlock()
		if n != 0 {
			t.Errorf("%s: the impostor received %d dispatches", name, n)
		}
		srv.Stop()
		_ = e.pool.RemoveAgent(ctx, agentID)
	}
}

// TestStagesAddUp: an invocation's timing splits the dispatch round trip
// with what the agent reported, and every stage reaches the stage metric.
func TestStagesAddUp(t *testing.T) {
	e := setup(t, scheduler.Config{})
	reg := prometheus.NewRegistry()
	s := e.replica(t, scheduler.WithMetrics(reg))
	ctx := context.Background()
	if err := e.pool.AddWarm(ctx, "i1", "a1", "m128"); err != nil {
		t.Fatal(err)
	}
	e.agent.mu.Lock()
	e.agent.timed = true
	e.agent.mu.Unlock()
	t0 := time.Now()
	res, err := s.Invoke(ctx, &invoke.Invocation{Tenant: "t1", Function: "f", Payload: []byte(`{}`)})
	total := time.Since(t0)
	if err != nil || !res.OK() {
		t.Fatalf("invoke: %+v %v", res, err)
	}
	tm := res.Timing
	if tm.Agent != time.Millisecond || tm.ToHandler != time.Millisecond || tm.FromHandler != time.Millisecond {
		t.Fatalf("agent %v, to handler %v, from handler %v: want 1 ms each", tm.Agent, tm.ToHandler, tm.FromHandler)
	}
	// The agent's 6 ms (1 + 5) are taken out of a round trip of at least 6 ms.
	if tm.Claim <= 0 || tm.Release <= 0 || tm.Dispatch <= 0 {
		t.Fatalf("claim %v, dispatch %v, release %v: each must be measured", tm.Claim, tm.Dispatch, tm.Release)
	}
	if sum := tm.Claim + tm.Dispatch + tm.Agent + tm.ToHandler + res.Duration + tm.FromHandler + tm.Release; sum > total {
		t.Fatalf("stages add up to %v, more than the whole invoke's %v", sum, total)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	observed := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "ember_scheduler_stage_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var stage, start string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "stage":
					stage = l.GetValue()
				case "start":
					start = l.GetValue()
				}
			}
			if n := m.GetHistogram().GetSampleCount(); n > 0 {
				observed[stage+"/"+start] += n
			}
		}
	}
	want := map[string]uint64{}
	for _, st := range []string{"claim", "dispatch", "agent", "to_handler", "handler", "from_handler", "release"} {
		want[st+"/pool_hit"] = 1
	}
	if !maps.Equal(observed, want) {
		t.Fatalf("stage observations %v, want %v", observed, want)
	}
}

// direct calls an agent server as a local agent's client does.
type direct struct{ *agent }

func (d direct) Dispatch(ctx context.Context, r *dispatchpb.DispatchRequest, _ ...grpc.CallOption) (*dispatchpb.DispatchResponse, error) {
	return d.agent.Dispatch(ctx, r)
}

// TestLocalAgentNeedsNoConnection: an agent made local is called directly,
// even where its registered address answers nothing.
func TestLocalAgentNeedsNoConnection(t *testing.T) {
	e := setup(t, scheduler.Config{})
	ctx := context.Background()
	if err := e.pool.RegisterAgent(ctx, pool.Agent{ID: "local", Addr: "127.0.0.1:1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.sched.UseLocalAgent("local", direct{e.agent})
	if err := e.pool.AddWarm(ctx, "i-local", "local", "m128"); err != nil {
		t.Fatal(err)
	}
	r := e.invoke(t, "f")
	if !r.OK() || r.Agent != "local" || r.Instance != "i-local" || string(r.Payload) != `{"x":1}` {
		t.Fatalf("invoke on the local agent: %+v", r)
	}
}
