package e2e

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
)

type counterResult struct {
	Value     int64  `json:"value"`
	Written   int64  `json:"written"`
	Error     string `json:"error"`
	LogStream string `json:"log_stream"`
}

func counterOp(t *testing.T, s *stack, c *client.Client, op string) counterResult {
	t.Helper()
	res, err := c.Invoke(s.ctx(), "counter", "", []byte(`{"op":"`+op+`"}`))
	if err != nil || !res.OK() {
		t.Fatalf("%s: %+v %v (log %s)", op, res, err, res.LogTail)
	}
	var out counterResult
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("%s: %s: %v", op, res.Payload, err)
	}
	return out
}

// TestStateSharedAcrossInstances: 100 invocations of a function on two
// instances each increment a counter file in the tenant's state resource
// under flock; the counter ends at 100. The resource's quota holds, and
// another tenant's resource of the same name is another resource.
func TestStateSharedAcrossInstances(t *testing.T) {
	s := newStack(t, "m128=2")
	state := []wire.StateMount{{Name: "counter", Path: "/mnt/counter", SizeMB: 16}}
	s.deploy("counter", "counter", wire.FunctionConfig{TimeoutMs: 10000, State: &state})

	var mu sync.Mutex
	instances := map[string]int{}
	var wg sync.WaitGroup
	for range 2 { // two at a time: two instances
		wg.Go(func() {
			for range 50 {
				r := counterOp(t, s, s.client, "incr")
				_, inst, _ := strings.Cut(r.LogStream, "]")
				mu.Lock()
				instances[inst]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(instances) < 2 {
		t.Fatalf("increments ran on %v, want two instances", instances)
	}
	if got := counterOp(t, s, s.client, "read"); got.Value != 100 {
		t.Fatalf("counter %d after 100 increments on %v", got.Value, instances)
	}
	t.Logf("100 increments on instances %v", instances)
	// Status shows the resource, attached to both instances (agents report
	// it with their heartbeat).
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := s.client.Status(s.ctx())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.State) == 1 && st.State[0].Name == "counter" && st.State[0].Attached == 2 {
			if sz := st.State[0].SizeBytes; sz <= 8<<20 || sz > 16<<20 {
				t.Fatalf("resource size %d, want about 16 MB", sz)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status state %+v, want counter attached to 2 instances", st.State)
		}
		time.Sleep(100 * time.Millisecond) // polling the agent's next report
	}

	fill := counterOp(t, s, s.client, "fill")
	if fill.Written <= 0 || fill.Written > 16<<20 || !strings.Contains(fill.Error, "no space") {
		t.Fatalf("filling a 16 MB resource: wrote %d, error %q", fill.Written, fill.Error)
	}

	other := s.tenantClient("other")
	s.deployAs(other, "counter", "counter", wire.FunctionConfig{TimeoutMs: 10000, State: &state})
	if got := counterOp(t, s, other, "read"); got.Value != 0 {
		t.Fatalf("another tenant's resource of the same name reads %d", got.Value)
	}
	for deadline := time.Now().Add(30 * time.Second); ; { // each tenant sees its own in status
		st, err := other.Status(s.ctx())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.State) == 1 && st.State[0].Tenant == "other" {
			break
		}
		for _, r := range st.State {
			if r.Tenant != "other" {
				t.Fatalf("tenant other sees %+v", r)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant other's status state %+v", st.State)
		}
		time.Sleep(100 * time.Millisecond) // polling the agent's next report
	}
}
