package hostagent

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/internal/testenv"
	"google.golang.org/grpc"
)

// TestRestartReattaches: an agent stopped with KeepInstances leaves its
// instances running, with their containers; the next agent on the same
// state directory takes them back: the same instances return to Redis (the
// tenant's with its hot version), the next dispatch of the version is hot
// in the same container and measured by eBPF again. After an upgrade of
// ember-init (another instance image), the next agent takes none of them
// back: they are destroyed, and the version's next invocation starts a
// container on a new instance. A stop without KeepInstances then destroys
// everything. Real Redis, containerd, ember-init and the kafka-echo
// example.
func TestRestartReattaches(t *testing.T) {
	const agentID = "agent-restart"
	it := newIntegration(t, agentID, "kafka-echo")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	client, ns, rt, dial, pst := it.client, it.ns, it.rt, it.dial, it.pool
	digest := it.digests[0]
	stateDir := filepath.Join(searchableTempDir(t), "agent")
	// start runs an agent on the same state directory and returns its
	// dispatch client and its stop, which reports how long Run took to
	// return.
	start := func(keep bool, deps Deps) (dispatchpb.AgentClient, func() time.Duration) {
		t.Helper()
		a, err := New(Config{
			AgentID: agentID, ListenAddr: "127.0.0.1:0", StateDir: stateDir,
			Pool: map[string]int{"m128": 1}, MaxInstances: 4, MappedRootUID: rt.HostRootUID(),
			HeartbeatInterval: 200 * time.Millisecond, HeartbeatTTL: 5 * time.Second,
			KeepInstances: keep,
		}, deps)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(runCtx) }()
		select {
		case <-a.Ready():
		case err := <-done:
			t.Fatalf("Run ended before ready: %v", err)
		case <-ctx.Done():
			t.Fatal("agent not ready")
		}
		conn, err := grpc.NewClient(a.Addr(), dial)
		if err != nil {
			t.Fatal(err)
		}
		stopped := false
		halt := func() time.Duration {
			if stopped {
				return 0
			}
			stopped = true
			t0 := time.Now()
			stop()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			conn.Close()
			return time.Since(t0)
		}
		t.Cleanup(func() { halt() })
		return dispatchpb.NewAgentClient(conn), halt
	}
	instances := func() map[string]pool.Instance {
		t.Helper()
		insts, err := pst.Instances(ctx, agentID)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]pool.Instance{}
		for _, in := range insts {
			slices.Sort(in.Hot)
			out[in.ID] = in
		}
		return out
	}
	// containersBy lists the containers that run a task (running) or not
	// (an instance defined ahead, not started).
	containersBy := func(running bool) []string {
		t.Helper()
		nsCtx := namespaces.WithNamespace(context.Background(), ns)
		cs, err := client.Containers(nsCtx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range cs {
			if _, err := c.Task(nsCtx, nil); (err == nil) == running {
				ids = append(ids, c.ID())
			}
		}
		slices.Sort(ids)
		return ids
	}
	containers := func() []string { return containersBy(true) }

	ac, stop := start(true, it.deps(t))
	vk := pool.VersionKey("acme", "echo", "1")
	claim, ok, err := pst.Claim(ctx, "acme", "m128", vk, time.Now().Add(time.Minute))
	if err != nil || !ok {
		t.Fatalf("claim: %+v ok=%v err=%v", claim, ok, err)
	}
	req := &dispatchpb.DispatchRequest{
		InvocationId: "inv-1", InstanceId: claim.InstanceID, Tenant: "acme", Function: "echo",
		Version: "1", CodeDigest: digest, Handler: "bootstrap", MemoryMb: 128, TimeoutMs: 5000,
		Payload: []byte(`{"eventSource":"aws:kafka","records":{}}`),
	}
	for i, want := range []dispatchpb.StartKind{dispatchpb.StartKind_START_KIND_CONTAINER, dispatchpb.StartKind_START_KIND_HOT} {
		req.InvocationId = "before-" + want.String()
		resp, err := ac.Dispatch(ctx, req)
		if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != want {
			t.Fatalf("dispatch %d before the restart: %v %v, want ok %v", i, resp, err, want)
		}
	}
	if err := pst.Release(ctx, claim, vk, true); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the warming pool refilled", func() bool { return len(instances()) == 2 })
	before := instances()
	running := containers()
	if len(running) != 2 {
		t.Fatalf("instances in containerd: %v, want the tenant's and a warm one", running)
	}

	took := stop()
	t.Logf("stop with KeepInstances: %v", took)
	if got := containers(); !slices.Equal(got, running) {
		t.Fatalf("instances in containerd after a stop that keeps them: %v, want %v", got, running)
	}
	if defined := containersBy(false); len(defined) != 0 {
		t.Fatalf("instances defined ahead left in containerd by the stop: %v", defined)
	}
	if left := instances(); len(left) != 0 {
		t.Fatalf("instances left in redis by a stopped agent: %+v", left)
	}

	// The warm instance dies while no agent runs: the next start cannot
	// reattach to it, destroys it and starts another.
	var dead string
	for id, in := range before {
		if in.Tenant == "" {
			dead = id
		}
	}
	nsCtx := namespaces.WithNamespace(ctx, ns)
	ctr, err := client.LoadContainer(nsCtx, dead)
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.Task(nsCtx, nil)
	if err != nil {
		t.Fatal(err)
	}
	exited, err := task.Wait(nsCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(nsCtx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited

	ac, stop = start(true, it.deps(t))
	after := instances()
	if len(after) != len(before) {
		t.Fatalf("instances in redis after the restart: %+v, want %d", after, len(before))
	}
	for id, b := range before {
		a, ok := after[id]
		switch {
		case id == dead && ok:
			t.Fatalf("the dead instance %s is back in redis", id)
		case id != dead && (!ok || a.Class != b.Class || a.Tenant != b.Tenant || !slices.Equal(a.Hot, b.Hot)):
			t.Fatalf("instance %s after the restart: %+v, want %+v", id, a, b)
		}
	}
	var want []string
	for id := range after {
		want = append(want, id)
	}
	slices.Sort(want)
	if got := containers(); !slices.Equal(got, want) {
		t.Fatalf("instances in containerd after the restart: %v, want %v (the live ones kept, the dead one replaced)", got, want)
	}
	claim, ok, err = pst.Claim(ctx, "acme", "m128", vk, time.Now().Add(time.Minute))
	if err != nil || !ok || claim.Kind != pool.KindHot || claim.InstanceID != req.InstanceId {
		t.Fatalf("claim after the restart: %+v ok=%v err=%v, want hot on %s", claim, ok, err, req.InstanceId)
	}
	req.InvocationId = "after-restart"
	t0 := time.Now()
	resp, err := ac.Dispatch(ctx, req)
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != dispatchpb.StartKind_START_KIND_HOT {
		t.Fatalf("dispatch after the restart: %v %v, want ok and hot (the container outlived its agent)", resp, err)
	}
	t.Logf("first dispatch after the restart: hot, %v", time.Since(t0))
	checkUsage(t, "dispatch after the restart", resp.GetUsage())
	if err := pst.Release(ctx, claim, vk, true); err != nil {
		t.Fatal(err)
	}

	kept := containers()
	stop()
	if got := containers(); !slices.Equal(got, kept) {
		t.Fatalf("instances in containerd after the second stop that keeps them: %v, want %v", got, kept)
	}

	// An upgrade: the next agent starts instances of another ember-init
	// (the same program with a byte more, so another image; ember-shim
	// beside it as before). It takes none of those left running back: they
	// run the old one.
	upgraded := filepath.Join(t.TempDir(), "ember-init")
	for _, f := range []struct {
		from, to string
		more     []byte
	}{
		{it.initBin, upgraded, []byte{0}},
		{filepath.Join(filepath.Dir(it.initBin), "ember-shim"), filepath.Join(filepath.Dir(upgraded), "ember-shim"), nil},
	} {
		bin, err := os.ReadFile(f.from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.to, append(bin, f.more...), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	rt2, err := ContainerdRuntime(ctx, client, ns, upgraded, agentID)
	if err != nil {
		t.Fatal(err)
	}
	if rt2.ImageName() == rt.ImageName() {
		t.Fatalf("the upgraded ember-init makes the same image %s", rt.ImageName())
	}
	deps := it.deps(t)
	deps.Runtime = rt2
	ac, stop = start(false, deps)
	now := instances()
	for id := range now {
		if slices.Contains(kept, id) {
			t.Fatalf("instance %s of the old ember-init is back in redis after the upgrade: %+v", id, now)
		}
	}
	if got := containers(); slices.ContainsFunc(got, func(id string) bool { return slices.Contains(kept, id) }) {
		t.Fatalf("instances in containerd after the upgrade: %v, still some of the old ember-init's %v", got, kept)
	}
	for _, id := range containers() {
		if img, err := rt2.ImageOf(ctx, id); err != nil || img != rt2.ImageName() {
			t.Fatalf("instance %s after the upgrade runs %q (%v), want %s", id, img, err, rt2.ImageName())
		}
	}
	testenv.Eventually(t, 30*time.Second, "the upgraded agent's warming pool filled", func() bool { return len(instances()) == 1 })
	claim, ok, err = pst.Claim(ctx, "acme", "m128", vk, time.Now().Add(time.Minute))
	if err != nil || !ok || claim.Kind == pool.KindHot {
		t.Fatalf("claim after the upgrade: %+v ok=%v err=%v, want a warm instance (no hot container survives an upgrade)", claim, ok, err)
	}
	req.InstanceId, req.InvocationId = claim.InstanceID, "after-upgrade"
	resp, err = ac.Dispatch(ctx, req)
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || resp.Start != dispatchpb.StartKind_START_KIND_CONTAINER {
		t.Fatalf("dispatch after the upgrade: %v %v, want ok in a new container", resp, err)
	}
	if err := pst.Release(ctx, claim, vk, true); err != nil {
		t.Fatal(err)
	}

	stop()
	if got := append(containersBy(true), containersBy(false)...); len(got) != 0 {
		t.Fatalf("a stop without KeepInstances left %v", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(stateDir, "instances")); len(ents) != 0 {
		t.Fatalf("instance directories left: %v", ents)
	}
}
