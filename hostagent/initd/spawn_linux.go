package initd

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ember-run/ember/hostagent/shim"
)

// spawnSpec is everything needed to start one container process.
type spawnSpec struct {
	// self is the binary started as the container's shim (Config.ShimBinary).
	self string
	// netnsFD is the container's network namespace (see netns.New).
	netnsFD int
	// tasksFDs are v1 "tasks" files the spawning thread joins by writing "0".
	tasksFDs []int
	// cgroup2FD is the cgroup2 directory for CLONE_INTO_CGROUP, or -1.
	cgroup2FD int
	// out receives the shim's and the function's stdout and stderr.
	out *os.File
	// shim is what the shim does inside the namespaces.
	shim shim.Spec
}

// spawned is a started container process.
type spawned struct {
	pid int // the shim's, as ember-init sees it
	// api is the Runtime API listener, in the container's network namespace.
	api *net.TCPListener
	// status is where the shim reports how the function ended.
	status *os.File
}

// spawn starts a container process: the shim, PID 1 of a new pid
// namespace, with new mount, IPC and UTS namespaces, in the container's
// network namespace and cgroups; the shim then mounts the container's view
// and runs the bootstrap unprivileged (see shim.Run). All namespace and
// cgroup changes are made to a dedicated OS thread that is never unlocked,
// so Go discards it when the goroutine ends and no other goroutine runs in
// the container's namespaces. track runs the fork so that a reaper can
// register the pid before it could be reaped.
func spawn(s spawnSpec, track func(start func() (int, error)) (int, error)) (spawned, error) {
	type res struct {
		sp  spawned
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: this thread dies with the goroutine
		sp, err := spawnOnThread(s, track)
		ch <- res{sp, err}
	}()
	r := <-ch
	return r.sp, r.err
}

func spawnOnThread(s spawnSpec, track func(start func() (int, error)) (int, error)) (spawned, error) {
	if err := unix.Setns(s.netnsFD, unix.CLONE_NEWNET); err != nil {
		return spawned{}, fmt.Errorf("enter the container's network namespace: %w", err)
	}
	// CLONE_NEWPID applies to the children of this thread: the shim is PID
	// 1 of the new pid namespace.
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWPID); err != nil {
		return spawned{}, fmt.Errorf("unshare namespaces: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return spawned{}, fmt.Errorf("make / a slave mount: %w", err)
	}
	// The socket is made on this thread, so it lives in the container's
	// network namespace: only the container reaches its Runtime API.
	api, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return spawned{}, fmt.Errorf("runtime API listener: %w", err)
	}
	fail := func(err error) (spawned, error) {
		api.Close()
		return spawned{}, err
	}
	s.shim.Env = append(s.shim.Env, "AWS_LAMBDA_RUNTIME_API="+api.Addr().String())
	for _, fd := range s.tasksFDs {
		if _, err := unix.Write(fd, []byte("0")); err != nil {
			return fail(fmt.Errorf("join v1 cgroup (tasks fd %d): %w", fd, err))
		}
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer specR.Close()
	defer specW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer statusW.Close()
	devNull, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		statusR.Close()
		return fail(fmt.Errorf("open /dev/null: %w", err))
	}
	defer unix.Close(devNull)
	out := s.out.Fd()
	attr := &syscall.ProcAttr{
		Env:   []string{"PATH=/usr/bin:/bin"},
		Files: []uintptr{uintptr(devNull), out, out, specR.Fd(), statusW.Fd()},
		// No Pdeathsig: it follows the forking thread, which ends now.
		Sys: &syscall.SysProcAttr{Setpgid: true},
	}
	if s.cgroup2FD >= 0 {
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = s.cgroup2FD
	}
	pid, err := track(func() (int, error) {
		return syscall.ForkExec(s.self, []string{"ember-shim", shim.Arg}, attr)
	})
	runtime.KeepAlive(s.out)
	if err != nil {
		statusR.Close()
		return fail(fmt.Errorf("start the container shim %s: %w", s.self, err))
	}
	specR.Close()
	statusW.Close()
	if err := json.NewEncoder(specW).Encode(s.shim); err != nil {
		// The shim exits when its spec does not arrive; the reaper sees it.
		statusR.Close()
		return fail(fmt.Errorf("send the shim its spec: %w", err))
	}
	return spawned{pid: pid, api: api, status: statusR}, nil
}
