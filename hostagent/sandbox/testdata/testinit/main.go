// Command testinit stands in for ember-init in the sandbox tests: it listens
// on /ember/sock/init.sock and answers one request per connection:
// "report" describes the instance from inside (among it how a system call
// of the i386 or x32 table ends); "spawn" (sent with cgroup fds
// named as in initproto) starts /bin/busybox cat /proc/self/cgroup inside
// those cgroups the way ember-init does and returns its output.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

func init() { runtime.LockOSThread() }

func main() {
	if len(os.Args) > 2 && os.Args[1] == "compat-getpid" {
		compatChild(os.Args[2])
	}
	fmt.Printf("testinit up %s\n", os.Getenv("EMBER_INSTANCE_ID"))
	if os.Getenv("EMBER_TEST_IGNORE_TERM") != "" {
		signal.Ignore(syscall.SIGTERM) // only SIGKILL ends it
	} else {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		go func() {
			<-sigs
			fmt.Println("testinit got SIGTERM")
			os.Exit(0)
		}()
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: "/ember/sock/init.sock", Net: "unix"})
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			fmt.Println("accept:", err)
			os.Exit(1)
		}
		serve(c)
	}
}

func serve(c *net.UnixConn) {
	defer c.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(16*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		fmt.Fprintln(c, "read:", err)
		return
	}
	var fds []int
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err == nil && len(msgs) > 0 {
			fds, _ = syscall.ParseUnixRights(&msgs[0])
		}
	}
	req := strings.Fields(string(buf[:n]))
	switch {
	case len(req) > 0 && req[0] == "report":
		c.Write([]byte(report()))
	case len(req) > 1 && req[0] == "spawn":
		out, err := spawn(strings.Split(req[1], ","), fds)
		if err != nil {
			fmt.Fprintln(c, "spawn error:", err)
			return
		}
		c.Write(out)
	default:
		fmt.Fprintln(c, "unknown request")
	}
}

func report() string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "hostname=%s\n", host)
	fmt.Fprintf(&b, "uid=%d\n", os.Getuid())
	err := os.WriteFile("/probe", []byte("x"), 0o644)
	fmt.Fprintf(&b, "rootfs_write_erofs=%v\n", errors.Is(err, syscall.EROFS))
	err = os.WriteFile("/tmp/probe", []byte("x"), 0o644)
	fmt.Fprintf(&b, "tmp_writable=%v\n", err == nil)
	err = os.WriteFile("/ember/code/probe", []byte("x"), 0o644)
	fmt.Fprintf(&b, "code_write_erofs=%v\n", errors.Is(err, syscall.EROFS))
	ifs, _ := net.Interfaces()
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	fmt.Fprintf(&b, "interfaces=%s\n", strings.Join(names, ","))
	fmt.Fprintf(&b, "compat_syscall=%s\n", compatProbe("i386"))
	fmt.Fprintf(&b, "x32_syscall=%s\n", compatProbe("x32"))
	code, _ := os.ReadFile("/ember/code/hello.txt")
	fmt.Fprintf(&b, "code=%s\n", bytes.TrimSpace(code))
	return b.String()
}

// spawn starts busybox cat /proc/self/cgroup inside the cgroups named by
// names/fds, from a locked thread that is discarded afterwards.
func spawn(names []string, fds []int) ([]byte, error) {
	if len(names) != len(fds) {
		return nil, fmt.Errorf("%d names for %d fds", len(names), len(fds))
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	type res struct {
		pid int
		err error
	}
	done := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		cg2 := -1
		for i, n := range names {
			switch {
			case n == "cgroup2":
				cg2 = fds[i]
			case strings.HasPrefix(n, "tasks:"):
				if _, err := syscall.Write(fds[i], []byte("0")); err != nil {
					done <- res{err: fmt.Errorf("join %s: %w", n, err)}
					return
				}
			}
		}
		argv := []string{"/bin/busybox", "cat", "/proc/self/cgroup"}
		pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{
			Files: []uintptr{0, w.Fd(), w.Fd()},
			Sys: &syscall.SysProcAttr{UseCgroupFD: cg2 >= 0, CgroupFD: cg2,
				Credential: &syscall.Credential{Uid: 1000, Gid: 1000}},
		})
		done <- res{pid, err}
	}()
	rs := <-done
	w.Close()
	for _, fd := range fds {
		syscall.Close(fd)
	}
	if rs.err != nil {
		r.Close()
		return nil, rs.err
	}
	var out bytes.Buffer
	_, _ = out.ReadFrom(r)
	r.Close()
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(rs.pid, &ws, 0, nil); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
