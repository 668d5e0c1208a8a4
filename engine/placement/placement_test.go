package placement

import (
	"errors"
	"testing"

	"github.com/ember-run/ember/engine/pool"
)

var subpools = []pool.SubPool{
	{Name: "big", Tenant: "acme", MemoryMB: 3008, MilliCPU: 2000, Max: 4},
	{Name: "mid", Tenant: "acme", MemoryMB: 2048, MilliCPU: 1000, Max: 4},
	{Name: "other", Tenant: "globex", MemoryMB: 4096, MilliCPU: 2000, Max: 1},
	{Name: "sealed", Tenant: "acme", MemoryMB: 512, MilliCPU: 500, Network: "none", Max: 1},
}

func TestChoose(t *testing.T) {
	for _, c := range []struct {
		fn    Function
		class string
		never bool
	}{
		{Function{Tenant: "acme", MemoryMB: 3008}, "sp-big", false},
		{Function{Tenant: "acme", MemoryMB: 1500}, "sp-mid", false},                // the smallest that holds it
		{Function{Tenant: "acme", MemoryMB: 128}, "sp-mid", false},                 // a tenant with sub-pools uses them
		{Function{Tenant: "acme", MemoryMB: 128, SubPool: "big"}, "sp-big", false}, // named
		{Function{Tenant: "initech", MemoryMB: 256}, "m256", false},                // no sub-pools: fixed classes
		{Function{Tenant: "initech", MemoryMB: 3008}, "", true},                    // too big for the fixed classes
		{Function{Tenant: "acme", MemoryMB: 4096}, "", true},                       // bigger than acme's sub-pools
		{Function{Tenant: "acme", MemoryMB: 128, SubPool: "other"}, "", true},      // another tenant's
		{Function{Tenant: "acme", MemoryMB: 3008, SubPool: "mid"}, "", true},       // named but too small
		{Function{Tenant: "acme", MemoryMB: 256, Network: "none"}, "sp-sealed", false},
		{Function{Tenant: "acme", MemoryMB: 256, Network: "egress"}, "sp-mid", false}, // not into a sealed one unasked
		{Function{Tenant: "acme", MemoryMB: 256, SubPool: "sealed"}, "sp-sealed", false},
	} {
		got, err := Choose(c.fn, subpools)
		if c.never {
			if !errors.Is(err, ErrNeverFits) {
				t.Errorf("%+v: %+v, %v; want ErrNeverFits", c.fn, got, err)
			}
			continue
		}
		if err != nil || got.Class != c.class || (got.SubPool == nil) != (c.class[0] == 'm') {
			t.Errorf("%+v: %+v, %v; want %s", c.fn, got, err, c.class)
		}
		if got.SubPool != nil && got.SubPool.Tenant != c.fn.Tenant {
			t.Errorf("%+v got another tenant's sub-pool %+v", c.fn, got.SubPool)
		}
	}
}

func TestHost(t *testing.T) {
	r := func(mem, mcpu int64) pool.Resources { return pool.Resources{MemoryMB: mem, MilliCPU: mcpu} }
	agents := []pool.Agent{
		{ID: "a", Capacity: r(8192, 4000), Used: r(1024, 1000)}, // 7168 free
		{ID: "b", Capacity: r(4096, 2000), Used: r(512, 500)},   // 3584 free: tightest fit for 3008
		{ID: "c", Capacity: r(4096, 2000), Used: r(3000, 500)},  // 1096 free: no room
		{ID: "d", Capacity: r(2048, 8000)},                      // could never hold 3008
	}
	if got, err := Host(r(3008, 1000), agents); err != nil || got != "b" {
		t.Errorf("3008 MB: %q, %v; want b (least memory left)", got, err)
	}
	if got, err := Host(r(3008, 1600), agents); err != nil || got != "a" {
		t.Errorf("3008 MB, 1.6 vCPU: %q, %v; want a (b lacks CPU)", got, err)
	}
	if got, err := Host(r(128, 100), agents[2:]); err != nil || got != "c" {
		t.Errorf("128 MB on c, d: %q, %v; want c (less left than d)", got, err)
	}
	if _, err := Host(r(16384, 1000), agents); !errors.Is(err, ErrNeverFits) {
		t.Errorf("16 GB: %v, want ErrNeverFits", err)
	}
	if _, err := Host(r(1024, 64000), agents); !errors.Is(err, ErrNeverFits) {
		t.Errorf("64 vCPU: %v, want ErrNeverFits", err)
	}
	if _, err := Host(r(7500, 1000), agents); !errors.Is(err, ErrNoRoom) {
		t.Errorf("7500 MB with 7168 free at most: %v, want ErrNoRoom", err)
	}
	if _, err := Host(r(16384, 1000), append(agents, pool.Agent{ID: "old"})); !errors.Is(err, ErrNoRoom) {
		t.Errorf("16 GB with an agent that reports no capacity: %v, want ErrNoRoom", err)
	}
	if _, err := Host(r(128, 100), nil); !errors.Is(err, ErrNoRoom) {
		t.Errorf("no agents: %v, want ErrNoRoom (one may be starting)", err)
	}
}
