package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/internal/netnstest"
	"github.com/redis/go-redis/v9"
)

// TestRestartKeepsThePoolWarm: emberd stopped with --keep-instances (the
// commands' default) leaves its instances running; the next emberd on the
// same state directory reattaches to them: the same instances are in the
// pool, and the next invocation of a function that was hot before is hot
// again, in the same container, with its network (egress to the outside
// works; the host stays unreachable). A restart with --no-network does not
// take back a container with egress.
func TestRestartKeepsThePoolWarm(t *testing.T) {
	s := newStack(t, "m256=2", "--keep-instances")
	outsideIP := fmt.Sprintf("198.51.100.%d", 10+int(stacks.Load())%200)
	outside := netnstest.NewOutside(t, fmt.Sprintf("embr%d", os.Getpid()%100000), outsideIP+"/24")
	outside.Serve(t, outsideIP+":8080", "outside")
	s.deploy("hostile", "hostile", wire.FunctionConfig{MemoryMB: 256, TimeoutMs: 20000})

	rdb := redis.NewClient(&redis.Options{Addr: s.redis})
	defer rdb.Close()
	ps, err := pool.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	instances := func() map[string]string { // id -> tenant
		t.Helper()
		insts, err := ps.Instances(context.Background(), s.name)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, in := range insts {
			out[in.ID] = in.Tenant
		}
		return out
	}
	get := map[string]any{"probe": "get", "url": "http://" + outsideIP + ":8080/"}
	egress := func(when, wantStart string) time.Duration {
		t.Helper()
		t0 := time.Now()
		res, out := s.probe("hostile", get)
		took := time.Since(t0)
		if !res.OK() || !strings.Contains(strings.Join(out, "\n"), "HTTP 200 outside") {
			t.Fatalf("egress %s: %s %s %v", when, res.Status, res.Payload, out)
		}
		if wantStart != "" && res.Start != wantStart {
			t.Fatalf("invocation %s: start %s, want %s", when, res.Start, wantStart)
		}
		return took
	}
	egress("the first time", "")
	hot := egress("hot", "hot")
	// The warming pool refills after the claim: wait for it, so the set of
	// instances compared across the restart is settled.
	for deadline := time.Now().Add(time.Minute); len(instances()) != 3; time.Sleep(20 * time.Millisecond) { // polling the refill
		if time.Now().After(deadline) {
			t.Fatalf("the warming pool did not refill: %v", instances())
		}
	}
	before := instances()

	t0 := time.Now()
	s.stop()
	stopTook := time.Since(t0)
	s.start()
	after := instances()
	if !maps.Equal(after, before) {
		t.Fatalf("instances after the restart: %v, want the same as before: %v", after, before)
	}
	t1 := egress("after the restart", "hot")
	t.Logf("clean stop %v; hot invocation before the restart %v, first after it %v (hot, same container)", stopTook, hot, t1)

	// The network's rules still hold: the host is not reachable.
	res, out := s.probe("hostile", map[string]any{"probe": "gateway"})
	gw := strings.TrimSpace(strings.Join(out, ""))
	if !res.OK() || net.ParseIP(gw) == nil {
		t.Fatalf("gateway after the restart: %s %v", res.Status, out)
	}
	_, port, _ := net.SplitHostPort(s.api)
	if _, out := s.probe("hostile", map[string]any{"probe": "connect", "addrs": []string{net.JoinHostPort(gw, port)}}); strings.Contains(strings.Join(out, "\n"), "CONNECTED") {
		t.Errorf("a reattached container reached the host: %v", out)
	}

	// The next start has no network for containers: the container with
	// egress is not taken back (its egress would outlive the operator's
	// --no-network); the function's next invocation gets a new container,
	// with its own loopback only.
	s.stop()
	s.extra = append(s.extra, "--no-network")
	s.start()
	res, out = s.probe("hostile", get)
	if res.Start == "hot" || strings.Contains(strings.Join(out, "\n"), "HTTP 200 outside") {
		t.Errorf("after a restart with --no-network: start %s, output %v; want a new container without egress", res.Start, out)
	}

	// Leave nothing running: a last start that destroys at its stop.
	s.stop()
	s.extra = append(s.extra, "--keep-instances=false")
	s.start()
	ids := slices.Sorted(maps.Keys(instances()))
	s.stop()
	cs, err := ctrd.Client.Containers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if slices.Contains(ids, c.ID()) {
			t.Errorf("instance %s still in containerd after a stop without --keep-instances", c.ID())
		}
	}
}
