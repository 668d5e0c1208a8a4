package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// The test binary re-executes itself as the filtered child.
func TestMain(m *testing.M) {
	if os.Getenv("EMBER_SECCOMP_CHILD") == "1" {
		child()
		return
	}
	os.Exit(m.Run())
}

// child loads the filter and reports what each probe returned.
func child() {
	if err := Load(); err != nil {
		os.Stdout.WriteString(`{"load":"` + err.Error() + `"}`)
		os.Exit(1)
	}
	res := map[string]string{}
	errno := func(err error) string {
		var e syscall.Errno
		if errors.As(err, &e) {
			return unix.ErrnoName(e)
		}
		if err == nil {
			return "ok"
		}
		return err.Error()
	}
	res["unshare_user"] = errno(unix.Unshare(unix.CLONE_NEWUSER))
	res["unshare_ns"] = errno(unix.Unshare(unix.CLONE_NEWNS))
	res["mount"] = errno(unix.Mount("tmpfs", "/mnt", "tmpfs", 0, ""))
	res["setns"] = errno(unix.Setns(0, 0))
	_, _, e := unix.RawSyscall(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0)
	res["clone_newuser"] = errnoOf(e)
	_, _, e = unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0)
	res["clone3"] = errnoOf(e)
	_, _, e = unix.RawSyscall(unix.SYS_BPF, 0, 0, 0)
	res["bpf"] = errnoOf(e)
	_, _, e = unix.RawSyscall6(unix.SYS_PERF_EVENT_OPEN, 0, 0, 0, 0, 0, 0)
	res["perf_event_open"] = errnoOf(e)
	_, _, e = unix.RawSyscall(unix.SYS_KEYCTL, 0, 0, 0)
	res["keyctl"] = errnoOf(e)
	_, _, e = unix.RawSyscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
	res["ptrace"] = errnoOf(e)
	// Ordinary work still runs: files, a thread-creating clone (the Go
	// runtime's), and a child process.
	res["getpid"] = errno(nil)
	if _, err := os.ReadFile("/proc/self/status"); err != nil {
		res["read"] = err.Error()
	} else {
		res["read"] = "ok"
	}
	out, err := exec.Command("/bin/true").CombinedOutput()
	res["exec"] = errno(err) + string(out)
	b, _ := json.Marshal(res)
	os.Stdout.Write(b)
	os.Exit(0)
}

func errnoOf(e syscall.Errno) string {
	if e == 0 {
		return "ok"
	}
	return unix.ErrnoName(e)
}

func TestFilter(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "EMBER_SECCOMP_CHILD=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var res map[string]string
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	for probe, want := range map[string]string{
		"unshare_user": "EPERM", "unshare_ns": "EPERM", "mount": "EPERM", "setns": "EPERM",
		"clone_newuser": "EPERM", "clone3": "ENOSYS", "bpf": "EPERM", "perf_event_open": "EPERM",
		"keyctl": "EPERM", "ptrace": "EPERM", "getpid": "ok", "read": "ok", "exec": "ok",
	} {
		if got := res[probe]; !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want %s", probe, got, want)
		}
	}
}

// TestProgramDecisions runs the assembled filter in a BPF interpreter for
// every system call number: denied ones get EPERM, all others are
// allowed; clone is judged by its flags, clone3 gets ENOSYS, other
// architectures and the x32 ABI are killed.
func TestProgramDecisions(t *testing.T) {
	raw, err := Program()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 160 {
		t.Errorf("%d instructions for %d denied calls", len(raw), len(Denied))
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the program does not disassemble")
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	// seccomp_data as the interpreter reads it: big-endian words (the
	// kernel loads native-endian; the filter only compares whole words, and
	// args[0]'s low word is at offset 16 on little-endian x86-64).
	run := func(arch, nr, arg0 uint32) uint32 {
		d := make([]byte, 64)
		binary.BigEndian.PutUint32(d[0:], nr)
		binary.BigEndian.PutUint32(d[4:], arch)
		binary.BigEndian.PutUint32(d[16:], arg0)
		v, err := vm.Run(d)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(v)
	}
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	denied := map[uint32]bool{}
	for _, nr := range Denied {
		denied[nr] = true
	}
	for nr := uint32(0); nr < 600; nr++ {
		got := run(unix.AUDIT_ARCH_X86_64, nr, 0)
		want := uint32(unix.SECCOMP_RET_ALLOW)
		switch {
		case denied[nr]:
			want = eperm
		case nr == unix.SYS_CLONE3:
			want = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
		}
		if got != want {
			t.Errorf("syscall %d: %#x, want %#x", nr, got, want)
		}
	}
	if got := run(unix.AUDIT_ARCH_X86_64, unix.SYS_CLONE, unix.CLONE_NEWUSER|uint32(unix.SIGCHLD)); got != eperm {
		t.Errorf("clone(CLONE_NEWUSER): %#x", got)
	}
	if got := run(unix.AUDIT_ARCH_X86_64, unix.SYS_CLONE, unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND); got != unix.SECCOMP_RET_ALLOW {
		t.Errorf("clone of a thread: %#x", got)
	}
	if got := run(0x40000003 /* AUDIT_ARCH_I386 */, unix.SYS_GETPID, 0); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("i386 ABI: %#x", got)
	}
	if got := run(unix.AUDIT_ARCH_X86_64, 0x40000000|unix.SYS_UNSHARE, 0); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("x32 ABI: %#x", got)
	}
}
