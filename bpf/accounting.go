package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

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

// slotSize is the size of one cgroup's counters in the usage_slots array
// (struct usage: four u64).
const slotSize = 32

// Accounting is the loaded programs and maps; one per host process.
type Accounting struct {
	objs  accountingObjects
	mem   *ebpf.Memory // usage_slots, mapped
	slots uint32       // usage_slots' length

	mu     sync.Mutex
	live   map[uint64]*Handle
	next   uint32   // slots below next have been used
	free   []uint32 // released slots, reused oldest first
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
	a := &Accounting{live: map[uint64]*Handle{}}
	if err := loadAccountingObjects(&a.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load accounting programs: %w", err)
	}
	mem, err := a.objs.UsageSlots.Memory()
	if err != nil {
		a.objs.Close()
		return nil, fmt.Errorf("bpf: map the usage counters: %w", err)
	}
	a.mem, a.slots = mem, a.objs.UsageSlots.MaxEntries()
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
	// The mapping of the counters stays while a.mem is reachable (the
	// library unmaps it when it is collected), so a late Read is safe.
	errs = append(errs, a.objs.Close())
	return errors.Join(errs...)
}

// Entries is how many cgroups the usage map holds (for leak checks).
func (a *Accounting) Entries() (int, error) {
	n := 0
	var k uint64
	var slot uint32
	it := a.objs.SlotByCgroup.Iterate()
	for it.Next(&k, &slot) {
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
	slot  uint32
	links []link.Link
	once  sync.Once
	err   error
	gone  atomic.Bool // closed: its slot may count for another
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
	slot, err := a.takeSlotLocked()
	if err != nil {
		return nil, fmt.Errorf("bpf: register cgroup %d: %w", cgroupID, err)
	}
	if err := a.objs.SlotByCgroup.Update(cgroupID, slot, ebpf.UpdateNoExist); err != nil {
		a.free = append(a.free, slot)
		return nil, fmt.Errorf("bpf: register cgroup %d: %w", cgroupID, err)
	}
	h := &Handle{a: a, id: cgroupID, slot: slot}
	for _, p := range []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{{a.objs.CountIngress, ebpf.AttachCGroupInetIngress}, {a.objs.CountEgress, ebpf.AttachCGroupInetEgress}} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: p.typ, Program: p.prog})
		if err != nil {
			if unregistered, _ := h.release(); unregistered {
				a.free = append(a.free, slot)
			}
			return nil, fmt.Errorf("bpf: attach %v to %s: %w", p.typ, cgroupPath, err)
		}
		h.links = append(h.links, l)
	}
	a.live[cgroupID] = h
	return h, nil
}

// takeSlotLocked returns a free slot of usage_slots, its counters zeroed:
// a never used one while there are, then the one released longest ago. A
// program that was already running when its cgroup was detached may still
// add to the slot for a few microseconds; with slots to spare, a released
// one is reused only long after.
func (a *Accounting) takeSlotLocked() (uint32, error) {
	var slot uint32
	switch {
	case a.next < a.slots:
		slot = a.next
		a.next++
	case len(a.free) > 0:
		slot = a.free[0]
		a.free = a.free[1:]
	default:
		return 0, fmt.Errorf("all %d counter slots in use", a.slots)
	}
	var zero [slotSize]byte
	if _, err := a.mem.WriteAt(zero[:], int64(slot)*slotSize); err != nil {
		a.free = append(a.free, slot)
		return 0, err
	}
	return slot, nil
}

// Read returns the cgroup's counters since Attach, from the mapped array:
// no system call and no lock (an Attach elsewhere on the host never delays
// it). gone is set before the slot is released, so a read that raced with
// Close and may have seen the slot's next owner fails.
func (h *Handle) Read() (Counters, error) {
	var buf [slotSize]byte
	if h.gone.Load() {
		return Counters{}, fmt.Errorf("bpf: read cgroup %d: closed", h.id)
	}
	_, err := h.a.mem.ReadAt(buf[:], int64(h.slot)*slotSize)
	if err == nil && h.gone.Load() {
		err = errors.New("closed")
	}
	if err != nil {
		return Counters{}, fmt.Errorf("bpf: read cgroup %d: %w", h.id, err)
	}
	le := binary.LittleEndian
	return Counters{RxBytes: le.Uint64(buf[0:]), TxBytes: le.Uint64(buf[8:]), RxPackets: le.Uint64(buf[16:]), TxPackets: le.Uint64(buf[24:])}, nil
}

// ID is the cgroup id the handle counts.
func (h *Handle) ID() uint64 { return h.id }

// Close detaches the programs from the cgroup and deletes its map entry.
// Idempotent.
func (h *Handle) Close() error {
	h.once.Do(func() {
		h.gone.Store(true)
		var unregistered bool
		unregistered, h.err = h.release()
		h.a.mu.Lock()
		delete(h.a.live, h.id)
		if unregistered { // else the programs may still count into it
			h.a.free = append(h.a.free, h.slot)
		}
		h.a.mu.Unlock()
	})
	return h.err
}

// release detaches the programs and deletes the cgroup's entry;
// unregistered reports whether the entry is gone (its slot free to reuse).
func (h *Handle) release() (unregistered bool, err error) {
	var errs []error
	for _, l := range h.links {
		errs = append(errs, l.Close())
	}
	h.links = nil
	unregistered = true
	if err := h.a.objs.SlotByCgroup.Delete(h.id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		unregistered = false
		errs = append(errs, fmt.Errorf("bpf: unregister cgroup %d: %w", h.id, err))
	}
	return unregistered, errors.Join(errs...)
}
