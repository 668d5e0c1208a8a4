package bpf

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// ErrAttached is returned by Attach for a cgroup that already has a Handle.
var ErrAttached = errors.New("cgroup already attached")

// Counters are a cgroup's cumulative traffic since Attach.
type Counters struct {
	// RxBytes and TxBytes are IP bytes (headers included) received and sent
	// by the cgroup's sockets; RxPackets and TxPackets count segments.
	RxBytes, TxBytes     uint64
	RxPackets, TxPackets uint64
}

// Accounting is the loaded programs and maps; one per host process.
type Accounting struct {
	objs   accountingObjects
	ncpu   int
	mu     sync.Mutex
	live   map[uint64]*Handle
	closed bool
}

// Load loads the programs and maps. It fails where the kernel has no
// cgroup_skb programs or the caller lacks privilege: callers fall back to
// cgroup statistics (no network).
func Load() (*Accounting, error) {
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("bpf: remove memlock limit: %w", err)
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("bpf: possible CPUs: %w", err)
	}
	a := &Accounting{ncpu: ncpu, live: map[uint64]*Handle{}}
	if err := loadAccountingObjects(&a.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load accounting programs: %w", err)
	}
	return a, nil
}

// Close detaches every Handle still open and releases the programs and
// maps. Idempotent.
func (a *Accounting) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	hs := make([]*Handle, 0, len(a.live))
	for _, h := range a.live {
		hs = append(hs, h)
	}
	a.mu.Unlock()
	var errs []error
	for _, h := range hs {
		errs = append(errs, h.Close())
	}
	errs = append(errs, a.objs.Close())
	return errors.Join(errs...)
}

// Entries is how many cgroups the usage map holds (for leak checks).
func (a *Accounting) Entries() (int, error) {
	n := 0
	var k uint64
	it := a.objs.UsageByCgroup.Iterate()
	vals := make([]accountingUsage, a.ncpu)
	for it.Next(&k, &vals) {
		n++
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("bpf: iterate usage map: %w", err)
	}
	return n, nil
}

// Handle is one attached cgroup. Close it when the cgroup goes away.
type Handle struct {
	a     *Accounting
	id    uint64
	links []link.Link
	once  sync.Once
	err   error
}

// Attach starts counting for the cgroup2 directory cgroupPath whose id
// (inode) is cgroupID: it registers the id and attaches the cgroup_skb
// programs to the directory. Attach before the cgroup's first process
// starts so that nothing goes uncounted.
func (a *Accounting) Attach(cgroupPath string, cgroupID uint64) (*Handle, error) {
	if cgroupID == 0 {
		return nil, errors.New("bpf: attach: cgroup id 0")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil, errors.New("bpf: attach: accounting closed")
	}
	if _, ok := a.live[cgroupID]; ok {
		return nil, fmt.Errorf("bpf: attach cgroup %d: %w", cgroupID, ErrAttached)
	}
	zero := make([]accountingUsage, a.ncpu)
	if err := a.objs.UsageByCgroup.Update(cgroupID, zero, ebpf.UpdateNoExist); err != nil {
		return nil, fmt.Errorf("bpf: register cgroup %d: %w", cgroupID, err)
	}
	h := &Handle{a: a, id: cgroupID}
	for _, p := range []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{{a.objs.CountIngress, ebpf.AttachCGroupInetIngress}, {a.objs.CountEgress, ebpf.AttachCGroupInetEgress}} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: p.typ, Program: p.prog})
		if err != nil {
			h.release()
			return nil, fmt.Errorf("bpf: attach %v to %s: %w", p.typ, cgroupPath, err)
		}
		h.links = append(h.links, l)
	}
	a.live[cgroupID] = h
	return h, nil
}

// Read returns the cgroup's counters since Attach.
func (h *Handle) Read() (Counters, error) {
	vals := make([]accountingUsage, h.a.ncpu)
	if err := h.a.objs.UsageByCgroup.Lookup(h.id, &vals); err != nil {
		return Counters{}, fmt.Errorf("bpf: read cgroup %d: %w", h.id, err)
	}
	var c Counters
	for _, v := range vals {
		c.RxBytes += v.RxBytes
		c.TxBytes += v.TxBytes
		c.RxPackets += v.RxPackets
		c.TxPackets += v.TxPackets
	}
	return c, nil
}

// ID is the cgroup id the handle counts.
func (h *Handle) ID() uint64 { return h.id }

// Close detaches the programs from the cgroup and deletes its map entry.
// Idempotent.
func (h *Handle) Close() error {
	h.once.Do(func() {
		h.a.mu.Lock()
		delete(h.a.live, h.id)
		h.a.mu.Unlock()
		h.err = h.release()
	})
	return h.err
}

func (h *Handle) release() error {
	var errs []error
	for _, l := range h.links {
		errs = append(errs, l.Close())
	}
	h.links = nil
	if err := h.a.objs.UsageByCgroup.Delete(h.id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("bpf: unregister cgroup %d: %w", h.id, err))
	}
	return errors.Join(errs...)
}
