package hostagent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// sysmonSlack is the timer slack the agent gives the Go runtime's monitor
// thread (sysmon) of every ember-init. While any goroutine runs, sysmon
// sleeps 20 us at a time, and the first system call ember-init makes after
// a pause wakes it again: each sleep is a task switch, and with one P it
// hands the P to another thread whenever a system call outlasts its sleep.
// A perf profile of ember-init under a warm load put 16% of its CPU in
// sysmon. With this slack the kernel may wake it up to 1 ms late
// (BenchmarkSysmonSlack measures ember-init's CPU per invocation with and
// without). What waits for sysmon (taking the P from a goroutine blocked in
// a system call, preempting one that ran for 10 ms) may wait up to 1 ms
// more; Go timers, such as invocation deadlines, do not use it.
const sysmonSlack = 1_000_000 // ns

// setSysmonSlack sets the timer slack, in ns, of the sysmon thread of the
// ember-init whose host pid is pid: the first thread its runtime creates,
// so its lowest thread id above the pid. It needs CAP_SYS_NICE over the
// instance's user namespace (the agent runs as root); ember-init, without
// it, cannot.
func setSysmonSlack(pid, ns int) error {
	if pid <= 0 {
		return nil
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return err
	}
	if name := strings.TrimSpace(string(comm)); name != "ember-init" {
		return fmt.Errorf("pid %d is %q, not ember-init", pid, name)
	}
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return err
	}
	sysmon := 0
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err == nil && tid > pid && (sysmon == 0 || tid < sysmon) {
			sysmon = tid
		}
	}
	if sysmon == 0 {
		return fmt.Errorf("ember-init %d: no thread after its main one", pid)
	}
	return os.WriteFile(fmt.Sprintf("/proc/%d/timerslack_ns", sysmon), []byte(strconv.Itoa(ns)), 0)
}
