package e2e

import (
	"cmp"
	"encoding/json"
	"slices"
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
		t.Fatalf("%s: %v: %s %s (log %s)", op, err, res.Status, res.Payload, res.LogTail)
	}
	var out counterResult
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("%s: %s: %v", op, res.Payload, err)
	}
	return out
}

// TestStateSharedAcrossInstances: 100 invocations of a function on two
// instances each increment a counter file in the tenant's state resource
// under a lock directory; the counter ends at 100. The resource's quota
// holds, and another tenant's resource of the same name is another
// resource.
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

// TestStateAcrossHosts: hosts mount the tenant's resource from one
// SeaweedFS filer (three hosts of one instance each: two serve the tenant,
// the third another tenant). 100 increments of a counter file under a
// lock directory (examples/counter), most of them two at a time, run on
// two hosts' instances: the values returned are 1 to 100, each once, many of them
// right after an increment on the other host, and the filer holds 100.
// Another tenant's function of the same resource name sees none of it.
func TestStateAcrossHosts(t *testing.T) {
	spec := hostSpec{pool: "m128=1", extra: []string{"--max-instances", "1"}}
	c := newClusterWith(t, clusterOpts{stateStore: true}, spec, spec, spec)
	s := c.ember
	state := []wire.StateMount{{Name: "counter", Path: "/mnt/counter", SizeMB: 16}}
	s.deploy("counter", "counter", wire.FunctionConfig{TimeoutMs: 10000, State: &state})

	type incr struct {
		value int64
		host  int
	}
	var mu sync.Mutex
	var done []incr
	run := func(n int) {
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				r := counterOp(t, s, s.client, "incr")
				_, inst, _ := strings.Cut(r.LogStream, "]")
				h := -1
				for i, hh := range c.hosts {
					if c.instancesOf(hh)[inst] {
						h = i
					}
				}
				mu.Lock()
				done = append(done, incr{r.Value, h})
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	run(1) // the first creates the counter
	for range 49 {
		run(2)
	}
	run(1)
	slices.SortFunc(done, func(a, b incr) int { return cmp.Compare(a.value, b.value) })
	perHost, switches := map[int]int{}, 0
	for i, d := range done {
		if d.value != int64(i+1) {
			t.Fatalf("increment %d returned %d: an increment was lost (%v)", i+1, d.value, done)
		}
		if d.host < 0 {
			t.Fatalf("increment %d ran on an instance of neither host", d.value)
		}
		perHost[d.host]++
		if i > 0 && done[i-1].host != d.host {
			switches++
		}
	}
	if len(perHost) != 2 || switches < 10 {
		t.Fatalf("increments per host %v, %d switches between hosts: want both hosts used, alternating", perHost, switches)
	}
	t.Logf("100 increments: %v per host, %d right after one on the other host", perHost, switches)
	if got, err := c.state.Read("/ember/state/" + tenant + "/counter/n"); err != nil || strings.TrimLeft(string(got), "0") != "100" {
		t.Fatalf("the filer holds %q, %v", got, err)
	}

	other := s.tenantClient("other")
	s.deployAs(other, "counter", "counter", wire.FunctionConfig{TimeoutMs: 10000, State: &state})
	if got := counterOp(t, s, other, "read"); got.Value != 0 {
		t.Fatalf("another tenant's resource of the same name reads %d", got.Value)
	}
}
