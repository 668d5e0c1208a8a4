package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Denied are the system calls a function may not make (EPERM).
var Denied = []uint32{
	// Namespaces and mounts.
	unix.SYS_UNSHARE, unix.SYS_SETNS, unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
	unix.SYS_MOUNT_SETATTR, unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE, unix.SYS_FSOPEN, unix.SYS_FSCONFIG,
	unix.SYS_FSMOUNT, unix.SYS_FSPICK,
	// Kernel attack surface that unprivileged code does not need.
	unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD, unix.SYS_IO_URING_SETUP,
	unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER, unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_FANOTIFY_INIT, unix.SYS_LOOKUP_DCOOKIE, unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_OPEN_BY_HANDLE_AT,
	// Other processes.
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_KCMP, unix.SYS_PIDFD_GETFD,
	unix.SYS_MOVE_PAGES, unix.SYS_MIGRATE_PAGES,
	// The machine.
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE, unix.SYS_KEXEC_LOAD,
	unix.SYS_KEXEC_FILE_LOAD, unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT,
	unix.SYS_SETTIMEOFDAY, unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX, unix.SYS_SYSLOG,
	unix.SYS_VHANGUP, unix.SYS_QUOTACTL, unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_USELIB, unix.SYS_PERSONALITY,
	unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME,
}

// cloneNewMask is every namespace flag of clone(2).
const cloneNewMask = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWTIME

// seccomp_data offsets (include/uapi/linux/seccomp.h).
const (
	offNr   = 0
	offArch = 4
	offArg0 = 16 // the low 32 bits of args[0] on little-endian x86-64
)

const x32Bit = 0x40000000

var (
	retAllow  = bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW}
	retEPERM  = bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)}
	retENOSYS = bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)}
	retKill   = bpf.RetConstant{Val: unix.SECCOMP_RET_KILL_PROCESS}
)

// Program assembles the filter. Allowed calls are the common case, so the
// denied numbers are searched as a balanced tree (about log2(len(Denied))
// comparisons per system call) rather than in a list every allowed call
// would walk to its end.
func Program() ([]bpf.RawInstruction, error) {
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("seccomp: no filter for %s", runtime.GOARCH)
	}
	denied := slices.Clone(Denied)
	slices.Sort(denied)
	denied = slices.Compact(denied)
	if slices.Contains(denied, unix.SYS_CLONE) || slices.Contains(denied, unix.SYS_CLONE3) {
		return nil, errors.New("seccomp: clone and clone3 have rules of their own")
	}
	// Layout: arch check; load nr; x32 check; clone3; clone (to its flag
	// check); the search tree, whose leaves jump to a shared EPERM or
	// ALLOW; then those returns and clone's flag check.
	p := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.AUDIT_ARCH_X86_64, SkipTrue: 1},
		retKill,
		bpf.LoadAbsolute{Off: offNr, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: x32Bit, SkipFalse: 1},
		retKill,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_CLONE3, SkipFalse: 1},
		retENOSYS,
	}
	cloneAt := len(p)
	p = append(p, bpf.JumpIf{}) // clone -> its flag check, patched below
	tree := searchTree(denied)
	treeAt := len(p)
	p = append(p, tree.code...)
	deny, allow := len(p), len(p)+1
	p = append(p, retEPERM, retAllow,
		bpf.LoadAbsolute{Off: offArg0, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: cloneNewMask, SkipFalse: 1},
		retEPERM,
		retAllow)
	// Resolve the tree's leaf jumps to the shared returns.
	for _, j := range tree.leaves {
		at := treeAt + j.at
		ji := p[at].(bpf.JumpIf)
		target := allow
		if j.deny {
			target = deny
		}
		skip := target - at - 1
		if skip > 255 {
			return nil, errors.New("seccomp: filter too long for one jump")
		}
		if j.onTrue {
			ji.SkipTrue = uint8(skip)
		} else {
			ji.SkipFalse = uint8(skip)
		}
		p[at] = ji
	}
	p[cloneAt] = bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.SYS_CLONE, SkipTrue: uint8(allow + 1 - cloneAt - 1)}
	return bpf.Assemble(p)
}

// tree is assembled search code whose jumps to EPERM or ALLOW are left
// for the caller to resolve.
type tree struct {
	code   []bpf.Instruction
	leaves []leaf
}

// leaf is a jump out of the tree: instruction at, on its true or false
// branch, to EPERM (deny) or ALLOW.
type leaf struct {
	at     int
	onTrue bool
	deny   bool
}

// searchTree decides "is nr in sorted" (the accumulator holds nr).
func searchTree(sorted []uint32) tree {
	var t tree
	if len(sorted) <= 2 {
		// Small: compare each; the last miss falls to ALLOW.
		for i, nr := range sorted {
			t.leaves = append(t.leaves, leaf{at: len(t.code), onTrue: true, deny: true})
			t.code = append(t.code, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr})
			if i == len(sorted)-1 {
				t.leaves = append(t.leaves, leaf{at: len(t.code) - 1, onTrue: false})
			}
		}
		if len(sorted) == 0 {
			t.leaves = append(t.leaves, leaf{at: 0, onTrue: true})
			t.code = append(t.code, bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 0}) // both to ALLOW
			t.leaves = append(t.leaves, leaf{at: 0, onTrue: false})
		}
		return t
	}
	mid := len(sorted) / 2
	left, right := searchTree(sorted[:mid]), searchTree(sorted[mid:])
	// jge sorted[mid] -> right, else fall into left.
	t.code = append(t.code, bpf.JumpIf{Cond: bpf.JumpGreaterOrEqual, Val: sorted[mid], SkipTrue: uint8(len(left.code))})
	for _, l := range left.leaves {
		t.leaves = append(t.leaves, leaf{at: l.at + 1, onTrue: l.onTrue, deny: l.deny})
	}
	t.code = append(t.code, left.code...)
	off := len(t.code)
	for _, l := range right.leaves {
		t.leaves = append(t.leaves, leaf{at: l.at + off, onTrue: l.onTrue, deny: l.deny})
	}
	t.code = append(t.code, right.code...)
	return t
}

// Load installs the filter on every thread of the calling process; the
// process's children inherit it. no_new_privs is set first.
func Load() error {
	raw, err := Program()
	if err != nil {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("seccomp: set no_new_privs: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC,
		uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("seccomp: load filter: %w", errno)
	}
	return nil
}
