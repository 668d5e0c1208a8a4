package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/testenv"
)

// BenchmarkPoolHitState: median of 10 pool-hit starts (a new tenant each:
// a warm instance claimed, the code delivered, a container started) of the
// counter function without state and with a state resource of the tenant
// (created at that moment: on this host an ext4 image made and mounted, or
// on SeaweedFS a weed mount started; then attached to the instance), and
// their ratio.
func BenchmarkPoolHitState(b *testing.B) {
	args := []string{"--max-instances", "40"}
	plain, local := poolHitState(b, newStack(b, "m512=2", args...)) // 512 MB: 0.29 vCPU, not the 0.1 of m128
	report(b, "pool hit, no state, median of 10", ms(plain), "ms-pool-hit")
	report(b, "pool hit with a new state resource, median of 10", ms(local), "ms-pool-hit-state")
	report(b, "ratio with state / without", float64(local)/float64(plain), "x-state")
	fs := testenv.StartSeaweedFS(b, "127.0.0.1")
	plain, shared := poolHitState(b, newStack(b, "m512=2", append(args, "--state-filer", fs.Filer, "--weed", testenv.WeedBinary())...))
	report(b, "pool hit, no state (agent with --state-filer), median of 10", ms(plain), "ms-pool-hit-2")
	report(b, "pool hit with a new SeaweedFS state resource, median of 10", ms(shared), "ms-pool-hit-seaweedfs")
	report(b, "ratio with SeaweedFS state / without", float64(shared)/float64(plain), "x-state-seaweedfs")
}

// poolHitState returns the medians of 10 pool hits without and with a new
// state resource.
func poolHitState(b *testing.B, s *stack) (plain, withState time.Duration) {
	const rounds = 10
	state := []wire.StateMount{{Name: "counter", Path: "/mnt/counter", SizeMB: 16}}
	hit := func(tenant string, withState bool) time.Duration {
		c := s.tenantClient(tenant)
		f, err := os.Open(zips["counter"])
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		cfg := wire.FunctionConfig{MemoryMB: 512, TimeoutMs: 10000}
		if withState {
			cfg.State = &state
		}
		if _, err := c.DeployFunction(s.ctx(), "counter", cfg, f); err != nil {
			b.Fatal(err)
		}
		s.waitWarm()
		start := time.Now()
		r, err := c.Invoke(s.ctx(), "counter", "", []byte(`{"op":"read"}`))
		if err != nil || !r.OK() || r.Start != "pool_hit" {
			b.Fatalf("invoke: %v %s %s", err, r.Status, r.Start)
		}
		return time.Since(start)
	}
	var p, w []time.Duration
	for i := range rounds {
		p = append(p, hit(fmt.Sprintf("plain%d", i), false))
		w = append(w, hit(fmt.Sprintf("state%d", i), true))
	}
	return median(p), median(w)
}
