package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
)

// BenchmarkPoolHitState: median of 10 pool-hit starts (a new tenant each:
// a warm instance claimed, the code delivered, a container started) of the
// counter function without state and with a state resource of the tenant
// (created on this host at that moment: an ext4 image made and mounted,
// then attached to the instance), and their ratio.
func BenchmarkPoolHitState(b *testing.B) {
	const rounds = 10
	s := newStack(b, "m512=2", "--max-instances", "40") // 512 MB: 0.29 vCPU, not the 0.1 of m128
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
	var plain, withState []time.Duration
	for i := range rounds {
		plain = append(plain, hit(fmt.Sprintf("plain%d", i), false))
		withState = append(withState, hit(fmt.Sprintf("state%d", i), true))
	}
	report(b, "pool hit, no state, median of 10", ms(median(plain)), "ms-pool-hit")
	report(b, "pool hit with a new state resource, median of 10", ms(median(withState)), "ms-pool-hit-state")
	report(b, "ratio with state / without", float64(median(withState))/float64(median(plain)), "x-state")
}
