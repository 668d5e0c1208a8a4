package e2e

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/registry"
)

type sleepResult struct {
	SleptMS   int64  `json:"slept_ms"`
	LogStream string `json:"log_stream"`
	TmpBytes  uint64 `json:"tmp_bytes"`
}

// instanceOf is the instance id at the end of a log stream
// ("2026/11/30/[$LATEST]i0123...").
func instanceOf(r sleepResult) string {
	_, id, _ := strings.Cut(r.LogStream, "]")
	return id
}

func invokeSleep(t *testing.T, s *stack, c *client.Client, fn string, ms int) (sleepResult, client.InvokeResult, time.Duration) {
	t.Helper()
	start := time.Now()
	res, err := c.Invoke(s.ctx(), fn, "", []byte(`{"ms":`+itoa(ms)+`,"stat":true}`))
	took := time.Since(start)
	if err != nil || !res.OK() {
		t.Fatalf("invoke %s: %+v %v", fn, res, err)
	}
	var out sleepResult
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("invoke %s: %s: %v", fn, res.Payload, err)
	}
	return out, res, took
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestSubPoolReservedAndWaiting: a tenant's variable sub-pool of at most
// one instance, with its own memory, CPU and /tmp size. Two concurrent
// invocations: the second waits (FIFO, woken when the first frees the
// instance) and runs on the same instance. Another tenant never gets that
// instance and is served by the fixed classes meanwhile; naming another
// tenant's sub-pool, or a sub-pool no host can hold, fails at once.
func TestSubPoolReservedAndWaiting(t *testing.T) {
	s := newStack(t, "m128=1,m512=1")
	other := s.tenantClient("other")
	sp, err := s.admin.PutSubPool(s.ctx(), wire.SubPool{Name: "big", Tenant: tenant, MemoryMB: 640, VCPU: 0.5, TmpMB: 32, Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Class != "sp-big" || sp.Pids != 256 || sp.Network != "egress" {
		t.Fatalf("sub-pool %+v", sp)
	}
	if _, err := other.PutSubPool(s.ctx(), wire.SubPool{Name: "mine", Tenant: "other", MemoryMB: 128, Max: 1}); err == nil {
		t.Fatal("a tenant created a sub-pool")
	}
	// 640 MB: more than the m512 class; acme's only sub-pool holds it.
	s.deploy("sleepy", "sleep", wire.FunctionConfig{MemoryMB: 640, TimeoutMs: 20000})

	var wg sync.WaitGroup
	results := make([]sleepResult, 2)
	took := make([]time.Duration, 2)
	for i := range 2 {
		wg.Go(func() { results[i], _, took[i] = invokeSleep(t, s, s.client, "sleepy", 1500) })
	}
	// Meanwhile the fixed classes serve another tenant.
	s.deployAs(other, "sleepy", "sleep", wire.FunctionConfig{MemoryMB: 512, TimeoutMs: 20000})
	o, _, _ := invokeSleep(t, s, other, "sleepy", 1)
	wg.Wait()
	a, b := instanceOf(results[0]), instanceOf(results[1])
	if a == "" || a != b {
		t.Fatalf("the two invocations ran on %q and %q, want one instance (max 1)", a, b)
	}
	if instanceOf(o) == a {
		t.Fatalf("the other tenant ran on the sub-pool's instance %s", a)
	}
	if slow := max(took[0], took[1]); slow < 3*time.Second {
		t.Errorf("invocations took %v: the second did not wait for the first", took)
	}
	if results[0].TmpBytes != 32<<20 {
		t.Errorf("/tmp of a sub-pool container is %d bytes, want 32 MiB", results[0].TmpBytes)
	}
	st, err := s.admin.Status(s.ctx())
	if err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, occ := range st.Occupancy {
		if occ.Class == "sp-big" {
			seen = true
			if n := occ.Warm + occ.Active + occ.Busy; n != 1 {
				t.Errorf("sub-pool big holds %d instances, max 1: %+v", n, occ)
			}
			// The second invocation waited about as long as the first ran (1.5 s).
			if occ.Waited < 1 || occ.WaitP99Ms < 1000 {
				t.Errorf("status shows no wait on sub-pool big: %+v", occ)
			}
		}
	}
	if !seen {
		t.Errorf("status shows no sub-pool: %+v", st.Occupancy)
	}
	ost, err := other.Status(s.ctx())
	if err != nil {
		t.Fatal(err)
	}
	for _, occ := range ost.Occupancy {
		if occ.Class == "sp-big" {
			t.Errorf("another tenant sees sub-pool big: %+v", ost.Occupancy)
		}
	}

	// Naming another tenant's sub-pool fails at once, with a clear error.
	s.deployAs(other, "pinned", "sleep", wire.FunctionConfig{MemoryMB: 128, SubPool: "big"})
	_, err = other.Invoke(s.ctx(), "pinned", "", []byte(`{"ms":1}`))
	if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "not reserved") {
		t.Errorf("another tenant's sub-pool: %v, want an invalid-request error", err)
	}
	// A sub-pool no host can hold fails at once instead of waiting.
	if _, err := s.admin.PutSubPool(s.ctx(), wire.SubPool{Name: "huge", Tenant: tenant, MemoryMB: 10240, VCPU: 64, Max: 1}); err != nil {
		t.Fatal(err)
	}
	s.deploy("huge", "sleep", wire.FunctionConfig{MemoryMB: 128, SubPool: "huge"})
	start := time.Now()
	_, err = s.client.Invoke(s.ctx(), "huge", "", []byte(`{"ms":1}`))
	if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "larger than every live host") {
		t.Errorf("an impossible sub-pool: %v, want an invalid-request error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("an impossible sub-pool took %v to fail", d)
	}
}

func wireSubPool(name, tenant string, memoryMB int64, vcpu float64, max int) wire.SubPool {
	return wire.SubPool{Name: name, Tenant: tenant, MemoryMB: memoryMB, VCPU: vcpu, Max: max}
}

func wireFunction(memoryMB int64) wire.FunctionConfig {
	return wire.FunctionConfig{MemoryMB: memoryMB, TimeoutMs: 20000}
}
