package sysmon

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Slack is the timer slack the agent gives the sysmon thread of every
// ember-init. While any goroutine runs, sysmon sleeps 20 us at a time, and
// the first system call the process makes after a pause wakes it again:
// each sleep is a task switch, and with one P it hands the P to another
// thread whenever a system call outlasts its sleep. A perf profile of
// ember-init under a warm load put 16% of its CPU in sysmon. With this
// slack the kernel may wake it up to 1 ms late (hostagent's
// BenchmarkSysmonSlack measures ember-init's CPU per invocation with and
// without). What waits for sysmon (taking the P from a goroutine blocked in
// a system call, preempting one that ran for 10 ms) may wait up to 1 ms
// more; Go timers, such as invocation deadlines, do not use it.
const Slack = 1_000_000 // ns

// Thread is the thread id of the sysmon of Go process pid: the first
// thread its runtime creates, so its lowest thread id above the pid.
func Thread(pid int) (int, error) {
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "task"))
	if err != nil {
		return 0, err
	}
	tid := 0
	for _, e := range ents {
		if t, err := strconv.Atoi(e.Name()); err == nil && t > pid && (tid == 0 || t < tid) {
			tid = t
		}
	}
	if tid == 0 {
		return 0, fmt.Errorf("process %d: no thread after its main one", pid)
	}
	return tid, nil
}

// SetSlack sets the timer slack, in ns, of the sysmon thread of Go process
// pid. Another process's needs CAP_SYS_NICE over its user namespace.
func SetSlack(pid, ns int) error {
	tid, err := Thread(pid)
	if err != nil {
		return err
	}
	return os.WriteFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid), []byte(strconv.Itoa(ns)), 0)
}
