package main

import (
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

// i386Getpid is getpid's number in the i386 table.
const i386Getpid = 20

// compatProbe runs, in a child process, an i386 getpid through int $0x80
// and says how it ended: "pid" if the kernel answered with the child's pid,
// "errno=N" if it refused the call, "thread-killed" if the thread that
// made it was killed (seccomp's kill-thread action: the rest of the child
// lives on to say so), "signal=S" if the whole child was killed.
func compatProbe() string {
	cmd := exec.Command("/proc/self/exe", "compat-getpid")
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
// thread of its own, watched until it answers or is gone.
func compatChild() {
	tid, answer := make(chan int), make(chan int32, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: if the call kills the thread, only this goroutine goes
		tid <- syscall.Gettid()
		answer <- compatSyscall(i386Getpid)
	}()
	task := fmt.Sprintf("/proc/self/task/%d", <-tid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
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
	fmt.Println("no answer in 10 s")
	os.Exit(0)
}
