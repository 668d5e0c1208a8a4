package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// compatSyscall makes system call nr through the 32-bit entry (int $0x80)
// and returns what the kernel answered (a negative errno on failure).
func compatSyscall(nr uint32) int32

// x32Syscall makes system call nr of the x32 table (bit 30 set) and
// returns what the kernel answered.
func x32Syscall(nr uint32) int32

// getpid's numbers in the i386 and x32 tables.
const (
	i386Getpid = 20
	x32Getpid  = 39
)

// compatCalls are the child's probes by name.
var compatCalls = map[string]func() int32{
	"i386": func() int32 { return compatSyscall(i386Getpid) },
	"x32":  func() int32 { return x32Syscall(x32Getpid) },
}

// compatProbe runs, in a child process, getpid through another system call
// table than x86-64's (table: "i386", through int $0x80, or "x32") and says
// how it ended: "pid" if the kernel answered with the child's pid,
// "errno=N" if it refused the call, "thread-killed" if the thread that
// made it was killed (seccomp's kill-thread action: the rest of the child
// lives on to say so), "signal=S" if the whole child was killed.
func compatProbe(table string) string {
	// The child's own bound comes first; this one only stops a child that
	// cannot run any more (a killed thread held a scheduler slot).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe", "compat-getpid", table)
	cmd.Env = []string{"GOMAXPROCS=4", "GOGC=off"} // no stop-the-world to wait for a dead thread
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "signal=" + ws.Signal().String()
		}
		return "exit=" + ee.Error()
	case err != nil:
		return "error=" + err.Error()
	}
	said := strings.TrimSpace(string(out))
	ret, found := strings.CutPrefix(said, "ret=")
	if !found {
		return said
	}
	n, err := strconv.Atoi(ret)
	switch {
	case err != nil:
		return said
	case n == cmd.Process.Pid:
		return "pid"
	case n < 0:
		return fmt.Sprintf("errno=%d", -n)
	}
	return said
}

// compatChild is the child's side of compatProbe: the call is made on a
// thread of its own, which then never ends (so a thread that is gone was
// killed), watched until it answers or is gone.
func compatChild(table string) {
	call := compatCalls[table]
	if call == nil {
		fmt.Println("no table", table)
		os.Exit(0)
	}
	tid, answer := make(chan int), make(chan int32, 1)
	go func() {
		runtime.LockOSThread()
		tid <- syscall.Gettid()
		answer <- call()
		select {} // keeps the thread: only a kill ends it
	}()
	task := fmt.Sprintf("/proc/self/task/%d", <-tid)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		select {
		case a := <-answer:
			fmt.Printf("ret=%d\n", a)
			os.Exit(0)
		case <-time.After(time.Millisecond):
		}
		if _, err := os.Stat(task); errors.Is(err, fs.ErrNotExist) {
			fmt.Println("thread-killed")
			os.Exit(0)
		}
	}
	fmt.Println("no answer in 2 s")
	os.Exit(0)
}
