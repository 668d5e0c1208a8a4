package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Threads is what /proc says of a set of processes' threads.
type Threads struct {
	CPUNs    int64 // on-CPU time (schedstat)
	Switches int64 // context switches, voluntary and not
}

// ProcThreads sums /proc/PID/task/TID/{schedstat,status} over the threads
// of pids: a process's own schedstat is its main thread's alone. Go keeps
// its threads, so little of a window's time leaves with one.
func ProcThreads(pids ...int) Threads {
	var t Threads
	for _, p := range pids {
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(p), "task", "*"))
		for _, task := range tasks {
			if st, err := os.ReadFile(filepath.Join(task, "schedstat")); err == nil {
				if f := strings.Fields(string(st)); len(f) > 0 {
					ns, _ := strconv.ParseInt(f[0], 10, 64)
					t.CPUNs += ns
				}
			}
			status, err := os.ReadFile(filepath.Join(task, "status"))
			if err != nil {
				continue // gone meanwhile
			}
			for _, line := range strings.Split(string(status), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					t.Switches += n
				}
			}
		}
	}
	return t
}

// PidsNamed lists the processes whose comm is name.
func PidsNamed(name string) []int {
	dirs, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if c, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm")); err == nil && strings.TrimSpace(string(c)) == name {
			pids = append(pids, pid)
		}
	}
	return pids
}
