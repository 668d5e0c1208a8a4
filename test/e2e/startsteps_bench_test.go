package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startStep is one container start's steps, in ms, from the agent's log:
// its "container started" line (code linked into the instance and the
// container's cgroups made with accounting attached, at once, until both
// are ready: prepared; ember-init's spawn of the shim until Started; the
// rest of the start: network and superseded containers) and the REPORT's
// Init Duration (the start's beginning to the handler's start). A start
// in an instance booted for it (a cold start) has the boot's steps too,
// from the agent's "instance ready" line: the sandbox made (containerd,
// runc), ember-init's Hello, the first container's network namespace set
// aside, and the whole boot.
type startStep struct {
	code, cgroup, prepared, spawn, other, init float64
	instance                                   string
	boot                                       bootStep
}

type bootStep struct{ prepare, create, answer, spare, took float64 }

// startSteps reads the steps of the starts of tenants' first invocations
// from s's current emberd log, in tenants' order; with booted, each in an
// instance booted for it, with the boot's steps.
func startSteps(b testing.TB, s *stack, tenants []string, booted bool) []startStep {
	b.Helper()
	f, err := os.Open(filepath.Join(s.dir, fmt.Sprintf("emberd-%d.log", s.restarts-1)))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	by := map[string]*startStep{}
	boots := map[string]bootStep{} // by instance
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct { // zerolog's durations are float ms
			Tenant, Instance, Message string
			Code, Cgroup, Network     float64
			Prepared                  float64
			InitStart                 float64 `json:"init_start"`
			Others                    float64 `json:"stop_others"`
			Took, Prepare, Create     float64
			Answer                    float64
			Netns                     float64
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if l.Message == "instance ready in the warming pool" {
			boots[l.Instance] = bootStep{prepare: l.Prepare, create: l.Create, answer: l.Answer, spare: l.Netns, took: l.Took}
		}
		if l.Tenant == "" {
			continue
		}
		st := by[l.Tenant]
		if st == nil {
			st = &startStep{}
			by[l.Tenant] = st
		}
		switch {
		case l.Message == "container started":
			st.code, st.cgroup, st.prepared, st.spawn, st.other = l.Code, l.Cgroup, l.Prepared, l.InitStart, l.Network+l.Others
			st.instance = l.Instance
		case strings.HasPrefix(l.Message, "REPORT ") && st.init == 0:
			if _, rest, ok := strings.Cut(l.Message, " Init Duration: "); ok {
				v, _, _ := strings.Cut(rest, " ")
				st.init, _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	var out []startStep
	for _, t := range tenants {
		st := by[t]
		if st == nil || st.init == 0 || st.spawn == 0 || st.prepared == 0 {
			b.Fatalf("tenant %s: no container start with an Init Duration in the log (%+v)", t, st)
		}
		if booted {
			if st.boot = boots[st.instance]; st.boot.took == 0 {
				b.Fatalf("tenant %s: no boot of its instance %q in the log", t, st.instance)
			}
		}
		out = append(out, *st)
	}
	return out
}

// reportStartSteps prints the median of each step of starts whose whole
// invocations, as the API's client saw them, took total: the table of
// issue 12's item 4. unit prefixes the metrics' units. The runtime's start-up is what Init Duration leaves
// after the agent's steps (the shim's and the bootstrap's own start until
// its first GET /next); the rest is the API, the claim, the dispatch, the
// invocation itself and the response.
func reportStartSteps(b *testing.B, what, unit string, total []time.Duration, steps []startStep) {
	med := func(f func(i int, s startStep) float64) float64 {
		var v []float64
		for i, s := range steps {
			v = append(v, f(i, s))
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	report(b, what+": code linked into the instance (at once with the next)", med(func(_ int, s startStep) float64 { return s.code }), unit+"-code")
	report(b, what+": cgroups made, accounting attached", med(func(_ int, s startStep) float64 { return s.cgroup }), unit+"-cgroup")
	report(b, what+": both ready", med(func(_ int, s startStep) float64 { return s.prepared }), unit+"-prepared")
	report(b, what+": ember-init spawns the shim", med(func(_ int, s startStep) float64 { return s.spawn }), unit+"-spawn")
	report(b, what+": network, superseded containers", med(func(_ int, s startStep) float64 { return s.other }), unit+"-other")
	report(b, what+": shim and runtime start-up to GET /next", med(func(_ int, s startStep) float64 {
		return s.init - s.prepared - s.spawn - s.other
	}), unit+"-runtime")
	report(b, what+": Init Duration (REPORT)", med(func(_ int, s startStep) float64 { return s.init }), unit+"-init")
	if steps[0].boot.took > 0 { // booted for the invocation: the boot's steps before the start's
		report(b, what+": boot: directories, state mount point, resolv.conf", med(func(_ int, s startStep) float64 { return s.boot.prepare }), unit+"-boot-prepare")
		report(b, what+": boot: sandbox made (containerd, runc)", med(func(_ int, s startStep) float64 { return s.boot.create }), unit+"-boot-create")
		report(b, what+": boot: ember-init's Hello", med(func(_ int, s startStep) float64 { return s.boot.answer }), unit+"-boot-answer")
		report(b, what+": boot: first container's network namespace", med(func(_ int, s startStep) float64 { return s.boot.spare }), unit+"-boot-netns")
		report(b, what+": boot, whole", med(func(_ int, s startStep) float64 { return s.boot.took }), unit+"-boot")
	}
	report(b, what+": API, claim, dispatch, invocation", med(func(i int, s startStep) float64 {
		return float64(total[i].Microseconds())/1000 - s.init - s.boot.took
	}), unit+"-rest")
}
