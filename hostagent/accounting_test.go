package hostagent

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ember-run/ember/hostagent/cgroup"
)

// acctParent creates a stand-in instance cgroup in every hierarchy and
// removes it when t ends.
func acctParent(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("accounting tests need root (cgroups, eBPF)")
	}
	p := fmt.Sprintf("/ember-accttest-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	for _, ctrl := range append([]string{cgroup.Unified}, cgroup.Controllers...) {
		if err := os.Mkdir(filepath.Join(cgroup.Root, ctrl, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := cgroup.RemoveTree(p); err != nil {
			t.Errorf("remove test parent cgroup: %v", err)
		}
	})
	return p
}

// runIn runs the shell script inside cg (moved in before it starts its
// work) and waits for it.
func runIn(t *testing.T, cg CgroupChild, script string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "read go; "+script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := cg.(cgroupDirs)
	for _, ctrl := range append([]string{cgroup.Unified}, cgroup.Controllers...) {
		if err := os.WriteFile(filepath.Join(d.Path(ctrl), "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			t.Fatal(err)
		}
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s: %v", script, err)
	}
}

const (
	burnScript = `i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done`
	// memScript holds a 40 MB string in the shell.
	memScript = `x=$(head -c 40000000 /dev/zero | tr '\0' a); echo ${#x} >/dev/null`
)

// TestAccountingModes measures invocations through the Accounting
// interface: eBPF, and the cgroup fallback configured explicitly. The
// memory peak is per invocation (reset by Mark).
func TestAccountingModes(t *testing.T) {
	for _, mode := range []string{AccountingEBPF, AccountingCgroup} {
		t.Run(mode, func(t *testing.T) {
			parent := acctParent(t)
			acct := openAccounting(mode, nil, zerolog.New(zerolog.NewTestWriter(t)))
			if acct == nil || acct.Source() != mode {
				t.Fatalf("openAccounting(%q) = %v", mode, acct)
			}
			defer acct.Close()
			cg, err := HostCgroups().Create(parent, "fn", 0, CgroupLimits{MemoryBytes: 256 << 20})
			if err != nil {
				t.Fatal(err)
			}
			cg.CloseFDs()
			m, err := acct.Attach(cg)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := m.Close(); err != nil {
					t.Error(err)
				}
				if err := cg.Remove(); err != nil {
					t.Error(err)
				}
			}()

			invoke := func(script string) Usage {
				mark, err := m.Mark()
				if err != nil {
					t.Fatal(err)
				}
				runIn(t, cg, script)
				u, err := m.Since(mark)
				if err != nil {
					t.Fatal(err)
				}
				return u
			}
			burn := invoke(burnScript)
			cpuacct, err := cg.(*cgroup.Child).CPUUsage()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("burn: %+v (cpuacct.usage %v)", burn, cpuacct)
			if burn.Source != mode || burn.CPU < 20*time.Millisecond || burn.MemoryPeakBytes <= 0 {
				t.Errorf("burn usage %+v: want source %s, CPU >= 20ms and a memory peak", burn, mode)
			}
			if !within(burn.CPU, cpuacct, 0.05) {
				t.Errorf("burn CPU %v vs cpuacct.usage %v: more than 5%% apart", burn.CPU, cpuacct)
			}
			if burn.NetworkMeasured != (mode == AccountingEBPF) || burn.TxBytes != 0 || burn.RxBytes != 0 {
				t.Errorf("network: %+v", burn)
			}

			big := invoke(memScript)
			small := invoke("true")
			t.Logf("memory peak: 40 MB invocation %d B, next invocation %d B", big.MemoryPeakBytes, small.MemoryPeakBytes)
			if big.MemoryPeakBytes < 40e6 {
				t.Errorf("peak %d B for a 40 MB string", big.MemoryPeakBytes)
			}
			if small.MemoryPeakBytes >= 40e6 || small.MemoryPeakBytes <= 0 {
				t.Errorf("peak %d B after a 40 MB invocation: not reset per invocation", small.MemoryPeakBytes)
			}
		})
	}
}

func within(got, want time.Duration, frac float64) bool {
	diff := float64(got - want)
	if diff < 0 {
		diff = -diff
	}
	return diff <= frac*float64(want)
}

func TestAccountingConfig(t *testing.T) {
	for _, tc := range []struct {
		mode string
		ok   bool
	}{{"", true}, {AccountingEBPF, true}, {AccountingCgroup, true}, {AccountingOff, true}, {"bpf", false}} {
		cfg := Config{AgentID: "a", Accounting: tc.mode}
		if err := cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Accounting %q: Validate() = %v", tc.mode, err)
		}
	}
	if got := (Config{}).WithDefaults().Accounting; got != AccountingEBPF {
		t.Errorf("default Accounting %q", got)
	}
	if openAccounting(AccountingOff, nil, zerolog.Nop()) != nil {
		t.Error("accounting off still measures")
	}
}

func TestBilledMs(t *testing.T) {
	for d, want := range map[time.Duration]int64{0: 1, time.Microsecond: 1, time.Millisecond: 1, 12340 * time.Microsecond: 13, 2 * time.Second: 2000} {
		if got := billedMs(d); got != want {
			t.Errorf("billedMs(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestReportLine(t *testing.T) {
	u := &Usage{CPU: 3200 * time.Microsecond, MemoryPeakBytes: 21 << 20, TxBytes: 120, NetworkMeasured: true}
	got := reportLine("r1", 12340*time.Microsecond, billedMs(12340*time.Microsecond), 128, 0, u)
	want := "REPORT RequestId: r1 Duration: 12.34 ms Billed Duration: 13 ms Memory Size: 128 MB Max Memory Used: 21 MB CPU: 3.2 ms Net: rx 0 B tx 120 B"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := reportLine("r2", time.Millisecond, 1, 256, 0, nil); got != "REPORT RequestId: r2 Duration: 1.00 ms Billed Duration: 1 ms Memory Size: 256 MB" {
		t.Errorf("unmeasured: %q", got)
	}
	// A container's first invocation: its start, as Lambda's Init Duration.
	got = reportLine("r3", 2*time.Millisecond, 2, 128, 8765*time.Microsecond, u)
	want = "REPORT RequestId: r3 Duration: 2.00 ms Billed Duration: 2 ms Memory Size: 128 MB Max Memory Used: 21 MB Init Duration: 8.77 ms CPU: 3.2 ms Net: rx 0 B tx 120 B"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
