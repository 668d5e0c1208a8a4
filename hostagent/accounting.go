package hostagent

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/bpf"
	"github.com/ember-run/ember/hostagent/cgroup"
	"github.com/ember-run/ember/hostagent/dispatchpb"
)

// Accounting modes (Config.Accounting).
const (
	// AccountingEBPF measures network with eBPF (package bpf), CPU and
	// memory from the container's cgroups as AccountingCgroup does; where
	// eBPF cannot load it falls back to AccountingCgroup, with one warning.
	AccountingEBPF = "ebpf"
	// AccountingCgroup measures CPU (cpuacct.usage) and memory from the
	// container's v1 cgroups; no network.
	AccountingCgroup = "cgroup"
	// AccountingOff measures nothing: responses carry no usage.
	AccountingOff = "off"
)

// Accounting measures what containers use. The agent opens one at Run and
// closes it after every container is gone.
type Accounting interface {
	// Attach starts measuring the container whose cgroup is cg. The agent
	// calls it after the cgroup is created and before the container's first
	// process starts. An error means this container goes unmeasured; it
	// never fails the container.
	Attach(cg CgroupChild) (Meter, error)
	// Source names what the numbers come from: "ebpf" or "cgroup".
	Source() string
	// Close releases what Attach and the implementation hold. Meters must be
	// closed first.
	Close() error
}

// Meter measures one container. Mark and Since are called with the
// instance's op lock held, never concurrently.
type Meter interface {
	// Mark resets the container's memory peak and samples its cumulative
	// counters; called right before an invocation.
	Mark() (Sample, error)
	// Since returns the use from mark until now.
	Since(mark Sample) (Usage, error)
	// Close stops measuring (detaches programs, deletes map entries); the
	// cgroup stays. Idempotent.
	Close() error
}

// Sample is a container's cumulative counters at one moment.
type Sample struct {
	CPU                  time.Duration
	RxBytes, TxBytes     uint64
	RxPackets, TxPackets uint64
}

// Usage is what one invocation used.
type Usage struct {
	CPU             time.Duration
	MemoryPeakBytes int64
	// RxBytes ... TxPackets are zero unless NetworkMeasured.
	RxBytes, TxBytes     uint64
	RxPackets, TxPackets uint64
	NetworkMeasured      bool
	Source               string
}

// cgroupDirs is what accounting needs of a CgroupChild beyond the
// interface; *cgroup.Child has it (test fakes do not, and go unmeasured).
type cgroupDirs interface {
	// Path is the child's directory in a v1 controller or cgroup.Unified.
	Path(ctrl string) string
	// ID is the cgroup2 id of the child.
	ID() uint64
}

// openAccounting returns the accounting for mode: deps' own if set, else
// eBPF with fallback to cgroup statistics, cgroup statistics, or nil (off).
func openAccounting(mode string, override Accounting, log zerolog.Logger) Accounting {
	if override != nil {
		return override
	}
	switch mode {
	case AccountingOff:
		log.Info().Msg("per-invocation accounting is off")
		return nil
	case AccountingCgroup:
		log.Info().Msg("per-invocation accounting from cgroup statistics (no network)")
		return cgroupAccounting{}
	}
	b, err := bpf.Load()
	if err != nil {
		log.Warn().Err(err).Msg("eBPF accounting unavailable; falling back to cgroup statistics (CPU and memory; no network)")
		return cgroupAccounting{}
	}
	log.Info().Msg("per-invocation accounting: network with eBPF, CPU and memory from cgroups")
	return &ebpfAccounting{b: b, log: log}
}

// cgroupAccounting reads the container's v1 cgroup files.
type cgroupAccounting struct{}

var _ Accounting = cgroupAccounting{}

func (cgroupAccounting) Source() string { return AccountingCgroup }
func (cgroupAccounting) Close() error   { return nil }

func (cgroupAccounting) Attach(cg CgroupChild) (Meter, error) {
	d, ok := cg.(cgroupDirs)
	if !ok {
		return nil, errors.New("accounting: cgroup has no directories")
	}
	return newCgroupMeter(d.Path("memory"), d.Path("cpuacct"))
}

// cgroupMeter keeps the container's v1 stat files open: opening a cgroup
// file costs more than reading it.
type cgroupMeter struct {
	peak *peakFile
	cpu  *os.File // cpuacct.usage
}

func newCgroupMeter(memDir, cpuDir string) (*cgroupMeter, error) {
	peak, err := openPeak(memDir)
	if err != nil {
		return nil, err
	}
	cpu, err := os.Open(filepath.Join(cpuDir, "cpuacct.usage"))
	if err != nil {
		peak.Close()
		return nil, fmt.Errorf("accounting: %w", err)
	}
	return &cgroupMeter{peak: peak, cpu: cpu}, nil
}

func (m *cgroupMeter) Mark() (Sample, error) {
	m.peak.reset()
	cpu, err := readInt(m.cpu)
	return Sample{CPU: time.Duration(cpu)}, err
}

func (m *cgroupMeter) Since(mark Sample) (Usage, error) {
	cpu, err := readInt(m.cpu)
	if err != nil {
		return Usage{}, err
	}
	peak, err := readInt(m.peak.f)
	if err != nil {
		return Usage{}, err
	}
	return Usage{CPU: max(time.Duration(cpu)-mark.CPU, 0), MemoryPeakBytes: peak, Source: AccountingCgroup}, nil
}

func (m *cgroupMeter) Close() error {
	m.cpu.Close()
	return m.peak.Close()
}

// peakFile is a container's open memory.max_usage_in_bytes.
type peakFile struct{ f *os.File }

func openPeak(memDir string) (*peakFile, error) {
	f, err := os.OpenFile(filepath.Join(memDir, "memory.max_usage_in_bytes"), os.O_RDWR, 0)
	if err != nil {
		// Read-only still gives the container's lifetime peak.
		if f, err = os.Open(filepath.Join(memDir, "memory.max_usage_in_bytes")); err != nil {
			return nil, fmt.Errorf("accounting: %w", err)
		}
	}
	return &peakFile{f: f}, nil
}

// reset makes the peak start again from the current usage. If the kernel
// refuses, the peak is the container's lifetime peak.
func (p *peakFile) reset() { _, _ = p.f.WriteAt([]byte("0"), 0) }

func (p *peakFile) Close() error { return p.f.Close() }

// readInt reads a cgroup file holding one integer, from its start, with
// one system call (os.File.ReadAt reads again at the end to fill its
// buffer: two per read, four more per invocation).
func readInt(f *os.File) (int64, error) {
	var buf [64]byte
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("accounting: read %s: %w", f.Name(), err)
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = unix.Pread(int(fd), buf[:], 0)
		return true
	}); err != nil {
		return 0, fmt.Errorf("accounting: read %s: %w", f.Name(), err)
	}
	if rerr != nil {
		return 0, fmt.Errorf("accounting: read %s: %w", f.Name(), rerr)
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(buf[:n])), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("accounting: parse %s: %w", f.Name(), err)
	}
	return v, nil
}

// ebpfAccounting counts network with package bpf, the rest as
// cgroupAccounting.
type ebpfAccounting struct {
	b        *bpf.Accounting
	log      zerolog.Logger
	warnOnce sync.Once
}

var _ Accounting = (*ebpfAccounting)(nil)

func (e *ebpfAccounting) Source() string { return AccountingEBPF }
func (e *ebpfAccounting) Close() error   { return e.b.Close() }

// Attach attaches the cgroup_skb programs to the container's cgroup2
// directory. Where that fails it measures the container from its cgroup
// files instead (warning once).
func (e *ebpfAccounting) Attach(cg CgroupChild) (Meter, error) {
	d, ok := cg.(cgroupDirs)
	if !ok {
		return nil, errors.New("accounting: cgroup has no directories")
	}
	cm, err := newCgroupMeter(d.Path("memory"), d.Path("cpuacct"))
	if err != nil {
		return nil, err
	}
	h, err := e.b.Attach(d.Path(cgroup.Unified), d.ID())
	if err != nil {
		e.warnOnce.Do(func() {
			e.log.Warn().Err(err).Msg("eBPF attach failed; this container (and any other that fails) is measured without network")
		})
		return cm, nil
	}
	return &ebpfMeter{cg: cm, h: h}, nil
}

// ebpfMeter is a cgroupMeter plus the container's traffic.
type ebpfMeter struct {
	cg *cgroupMeter
	h  *bpf.Handle
}

func (m *ebpfMeter) Mark() (Sample, error) {
	s, err := m.cg.Mark()
	if err != nil {
		return Sample{}, err
	}
	c, err := m.h.Read()
	if err != nil {
		return Sample{}, err
	}
	s.RxBytes, s.TxBytes, s.RxPackets, s.TxPackets = c.RxBytes, c.TxBytes, c.RxPackets, c.TxPackets
	return s, nil
}

func (m *ebpfMeter) Since(mark Sample) (Usage, error) {
	u, err := m.cg.Since(mark)
	if err != nil {
		return Usage{}, err
	}
	c, err := m.h.Read()
	if err != nil {
		return Usage{}, err
	}
	u.RxBytes, u.TxBytes = sub(c.RxBytes, mark.RxBytes), sub(c.TxBytes, mark.TxBytes)
	u.RxPackets, u.TxPackets = sub(c.RxPackets, mark.RxPackets), sub(c.TxPackets, mark.TxPackets)
	u.NetworkMeasured, u.Source = true, AccountingEBPF
	return u, nil
}

func (m *ebpfMeter) Close() error {
	m.cg.Close()
	return m.h.Close()
}

func sub(a, b uint64) uint64 {
	if a < b {
		return 0
	}
	return a - b
}

// peakMB is the memory peak in whole MB, rounded up (REPORT's Max Memory Used).
func (u *Usage) peakMB() int64 { return (u.MemoryPeakBytes + (1 << 20) - 1) >> 20 }

// reportLine is the Lambda-style REPORT line of an invocation (built with
// appends: it is written for every invocation). init, when positive, is the
// container's start (code delivery, spawn until the runtime's first GET
// /next): Lambda's "Init Duration", on an invocation that started one.
func reportLine(id string, duration time.Duration, billed, memoryMB int64, init time.Duration, u *Usage) string {
	b := make([]byte, 0, 192)
	b = append(b, "REPORT RequestId: "...)
	b = append(b, id...)
	b = append(b, " Duration: "...)
	b = strconv.AppendFloat(b, float64(duration)/float64(time.Millisecond), 'f', 2, 64)
	b = append(b, " ms Billed Duration: "...)
	b = strconv.AppendInt(b, billed, 10)
	b = append(b, " ms Memory Size: "...)
	b = strconv.AppendInt(b, memoryMB, 10)
	b = append(b, " MB"...)
	if u != nil {
		b = append(b, " Max Memory Used: "...)
		b = strconv.AppendInt(b, u.peakMB(), 10)
		b = append(b, " MB"...)
	}
	if init > 0 {
		b = append(b, " Init Duration: "...)
		b = strconv.AppendFloat(b, float64(init)/float64(time.Millisecond), 'f', 2, 64)
		b = append(b, " ms"...)
	}
	if u != nil {
		b = append(b, " CPU: "...)
		b = strconv.AppendFloat(b, float64(u.CPU)/float64(time.Millisecond), 'f', 1, 64)
		b = append(b, " ms"...)
		if u.NetworkMeasured {
			b = append(b, " Net: rx "...)
			b = strconv.AppendUint(b, u.RxBytes, 10)
			b = append(b, " B tx "...)
			b = strconv.AppendUint(b, u.TxBytes, 10)
			b = append(b, " B"...)
		}
	}
	return string(b)
}

// usageMetrics are the per tenant and function usage counters, and what
// measuring costs the agent.
type usageMetrics struct {
	invocations, cpuSeconds, rxBytes, txBytes, gbSeconds *prometheus.CounterVec
	// logRecords counts records for tenants' logging services by outcome.
	logRecords *prometheus.CounterVec
	// metering is the agent's time in the meter (Mark and Since).
	metering prometheus.Counter
}

// meterSampleEvery: the agent measures its CPU time in the meter on one
// invocation in this many (a thread's CPU clock costs a system call) and
// counts it that many times.
const meterSampleEvery = 32

// meterSample is an invocation's CPU time in the meter, when it is one
// of those measured.
type meterSample struct {
	on  bool
	cpu time.Duration
}

// around runs f, adding its CPU time (the thread's, with the goroutine
// kept on it) when s is on.
func (s *meterSample) around(f func()) {
	if !s.on {
		f()
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t := threadCPU()
	f()
	s.cpu += threadCPU() - t
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
	return time.Duration(ts.Nano())
}

// countMetering adds an invocation's time in the meter; m may be nil.
func (m *usageMetrics) countMetering(d time.Duration) {
	if m != nil {
		m.metering.Add(d.Seconds())
	}
}

func newUsageMetrics(reg prometheus.Registerer) (*usageMetrics, error) {
	labels := []string{"tenant", "function"}
	vec := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	m := &usageMetrics{
		invocations: vec("ember_usage_invocations_total", "Invocations run by this agent."),
		cpuSeconds:  vec("ember_usage_cpu_seconds_total", "On-CPU time of functions' containers during invocations."),
		rxBytes:     vec("ember_usage_network_receive_bytes_total", "IP bytes received by functions during invocations (eBPF accounting only)."),
		txBytes:     vec("ember_usage_network_transmit_bytes_total", "IP bytes sent by functions during invocations (eBPF accounting only)."),
		gbSeconds:   vec("ember_usage_gb_seconds_total", "Billed duration (1 ms granularity) times configured memory, in GB-seconds."),
		logRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ember_log_records_total",
			Help: "Records for tenants' logging services: sent, dropped (instance buffer full), failed (the service refused or stayed unreachable); unconfigured counts invocations whose service could not be set up."},
			[]string{"tenant", "outcome"}),
		metering: prometheus.NewCounter(prometheus.CounterOpts{Name: "ember_agent_metering_seconds_total",
			Help: "CPU time the agent spent sampling containers' usage around invocations (accounting's own cost in the agent): measured on one invocation in 32 with its thread's CPU clock, counted 32 times."}),
	}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.metering); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("hostagent: usage metrics: %w", err)
		}
		m.metering = are.ExistingCollector.(prometheus.Counter)
	}
	for _, p := range []**prometheus.CounterVec{&m.invocations, &m.cpuSeconds, &m.rxBytes, &m.txBytes, &m.gbSeconds, &m.logRecords} {
		if err := reg.Register(*p); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("hostagent: usage metrics: %w", err)
			}
			// Another agent in this process registered them first: share.
			*p = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return m, nil
}

// billedMs is the duration rounded up to whole milliseconds (at least 1).
func billedMs(d time.Duration) int64 {
	return max(int64(math.Ceil(float64(d)/float64(time.Millisecond))), 1)
}

// recordUsage logs the invocation's REPORT line, counts it in the metrics
// and returns the usage for the response (nil when u is nil) and, when
// wantLine is set (a logging service gets it too), the REPORT line.
func (a *Agent) recordUsage(log zerolog.Logger, req *dispatchpb.DispatchRequest, duration, wall, init time.Duration, memoryMB int64, u *Usage,
	wantLine bool) (*dispatchpb.Usage, string) {
	billed := billedMs(duration)
	var line string
	ev := log.Info()
	if ev.Enabled() || wantLine {
		line = reportLine(req.GetInvocationId(), duration, billed, memoryMB, init, u)
	}
	if ev.Enabled() {
		ev.Msg(line)
	}

	if m := a.usageMetrics; m != nil {
		t, f := req.GetTenant(), req.GetFunction()
		m.invocations.WithLabelValues(t, f).Inc()
		m.gbSeconds.WithLabelValues(t, f).Add(float64(memoryMB) / 1024 * float64(billed) / 1000)
		if u != nil {
			m.cpuSeconds.WithLabelValues(t, f).Add(u.CPU.Seconds())
			m.rxBytes.WithLabelValues(t, f).Add(float64(u.RxBytes))
			m.txBytes.WithLabelValues(t, f).Add(float64(u.TxBytes))
		}
	}
	if u == nil {
		return nil, line
	}
	return &dispatchpb.Usage{
		CpuNs: u.CPU.Nanoseconds(), WallNs: wall.Nanoseconds(), MemoryPeakBytes: u.MemoryPeakBytes,
		RxBytes: int64(u.RxBytes), TxBytes: int64(u.TxBytes), RxPackets: int64(u.RxPackets), TxPackets: int64(u.TxPackets),
		Source: u.Source, NetworkMeasured: u.NetworkMeasured, MemorySizeMb: memoryMB,
	}, line
}

// attachMeter starts measuring a new container; nil when accounting is off
// or the container cannot be measured (logged at debug: fakes in tests).
func (a *Agent) attachMeter(log zerolog.Logger, cg CgroupChild) Meter {
	if a.acct == nil {
		return nil
	}
	m, err := a.acct.Attach(cg)
	if err != nil {
		log.Debug().Err(err).Msg("container not measured")
		return nil
	}
	return m
}

// closeMeter stops measuring a container (before its cgroup is removed).
func closeMeter(log zerolog.Logger, m Meter) {
	if m == nil {
		return
	}
	if err := m.Close(); err != nil {
		log.Warn().Err(err).Msg("detach container accounting")
	}
}

// markUsage samples m right before an invocation; ok is false when there
// is nothing to measure. A failure is logged and leaves ok false.
func markUsage(log zerolog.Logger, m Meter) (mark Sample, ok bool) {
	if m == nil {
		return Sample{}, false
	}
	mark, err := m.Mark()
	if err != nil {
		log.Warn().Err(err).Msg("accounting: sample before the invocation")
		return Sample{}, false
	}
	return mark, true
}

// usageSince returns the use since markUsage, or nil when it cannot tell.
// Accounting never fails an invocation: failures are logged.
func usageSince(log zerolog.Logger, m Meter, mark Sample, ok bool) *Usage {
	if !ok {
		return nil
	}
	u, err := m.Since(mark)
	if err != nil {
		log.Warn().Err(err).Msg("accounting: sample after the invocation")
		return nil
	}
	return &u
}
