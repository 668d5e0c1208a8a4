package hostagent

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/sysmon"
	"github.com/ember-run/ember/internal/testenv"
)

// BenchmarkSysmonSlack: ember-init's CPU and task switches per hot
// invocation, and the invocation's time seen by the dispatcher, with its
// sysmon thread at sysmon.Slack and at the kernel's default 50 us, in
// alternating blocks on one instance (these machines are noisy).
//
//	go test -run '^$' -bench SysmonSlack -benchtime 4000x ./hostagent/
func BenchmarkSysmonSlack(b *testing.B) {
	hb := newHotBench(b)
	dispatch, id := hb.agent(b, AccountingEBPF)
	pid := initPid(b, id)
	const block = 250
	slack := [2]int{50_000, sysmon.Slack}
	var cpu, switches, wall, n [2]int64
	b.ResetTimer()
	for i := 0; i < b.N; {
		k := (i / block) % 2
		if err := setSysmonSlack(pid, slack[k]); err != nil {
			b.Fatal(err)
		}
		before := testenv.ProcThreads(pid)
		t0 := time.Now()
		for j := 0; j < block && i < b.N; j++ {
			dispatch(b, i)
			i++
			n[k]++
		}
		wall[k] += int64(time.Since(t0))
		after := testenv.ProcThreads(pid)
		cpu[k] += after.CPUNs - before.CPUNs
		switches[k] += after.Switches - before.Switches
	}
	b.StopTimer()
	if n[0] == 0 || n[1] == 0 {
		return // the testing package's first run, b.N = 1
	}
	per := func(v [2]int64, k int) float64 { return float64(v[k]) / float64(n[k]) }
	b.ReportMetric(per(cpu, 0)/1e3, "us-cpu/inv-default")
	b.ReportMetric(per(cpu, 1)/1e3, "us-cpu/inv-slack")
	b.ReportMetric(per(cpu, 1)/per(cpu, 0), "x-cpu")
	b.ReportMetric(per(wall, 0)/1e3, "us-wall/inv-default")
	b.ReportMetric(per(wall, 1)/1e3, "us-wall/inv-slack")
	b.ReportMetric(per(switches, 0), "switches/inv-default")
	b.ReportMetric(per(switches, 1), "switches/inv-slack")
}

// initPid is the host pid of the ember-init of instance id: the ember-init
// process in one of its cgroups.
func initPid(t testing.TB, id string) int {
	t.Helper()
	for _, pid := range testenv.PidsNamed("ember-init") {
		if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); strings.Contains(string(cg), id) {
			return pid
		}
	}
	t.Fatalf("no ember-init process in a cgroup of %s", id)
	return 0
}

// checkSysmonSlack: the ember-init of instance id has its runtime's sysmon
// thread (its first after the main one) at sysmon.Slack, and no other
// thread has it.
func checkSysmonSlack(t *testing.T, id string) {
	t.Helper()
	pid := initPid(t, id)
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var tids []int
	for _, e := range tasks {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	slices.Sort(tids)
	slack := func(tid int) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if len(tids) < 2 || tids[0] != pid {
		t.Fatalf("ember-init %d of %s: threads %v", pid, id, tids)
	}
	if got := slack(tids[1]); got != strconv.Itoa(sysmon.Slack) {
		t.Errorf("ember-init %d of %s: sysmon thread %d has timer slack %s, want %d", pid, id, tids[1], got, sysmon.Slack)
	}
	for _, tid := range append([]int{pid}, tids[2:]...) {
		if got := slack(tid); got == strconv.Itoa(sysmon.Slack) {
			t.Errorf("ember-init %d of %s: thread %d has the sysmon's slack too", pid, id, tid)
		}
	}
}
