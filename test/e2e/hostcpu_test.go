package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
)

// hostBusy is the CPU time the whole host has spent busy so far (all CPUs,
// /proc/stat: everything but idle and iowait).
func hostBusy(b *testing.B) time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ
}

// accountingRuntime is the run time so far of the accounting's eBPF
// programs (bpf/accounting.c's count_*) loaded on the host, from the
// kernel's BPF statistics (ebpf.EnableStats must be on).
func accountingRuntime(b *testing.B) time.Duration {
	var total time.Duration
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return total // no more
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // gone meanwhile
		}
		info, err := p.Info()
		if err == nil && strings.HasPrefix(info.Name, "count_") {
			if st, err := p.Stats(); err == nil {
				total += st.Runtime
			}
		}
		p.Close()
	}
}
