package initd

import (
	"context"
	"os"
	"os/signal"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// waiter learns when container processes end. Container processes are
// started with syscall.ForkExec (no os.Process, no exec.Cmd), so no other
// code in the process waits for them.
type waiter interface {
	// track runs start (a fork) and returns the new pid and a channel that
	// receives the pid's wait status exactly once. The pid is registered
	// before the reaper can observe its exit.
	track(start func() (int, error)) (int, <-chan unix.WaitStatus, error)
	// run waits for children until ctx is done.
	run(ctx context.Context) error
}

// pidWaiter waits for each tracked pid with its own blocking wait4(pid). It
// leaves other children alone, so it is safe in a process that also uses
// os/exec (tests).
type pidWaiter struct {
	wg sync.WaitGroup
}

func (w *pidWaiter) track(start func() (int, error)) (int, <-chan unix.WaitStatus, error) {
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	w.wg.Go(func() {
		var ws unix.WaitStatus
		for {
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
		ch <- ws
	})
	return pid, ch, nil
}

// run returns once ctx is done and every tracked pid has been reaped; the
// server kills all containers before cancelling it.
func (w *pidWaiter) run(ctx context.Context) error {
	<-ctx.Done()
	w.wg.Wait()
	return nil
}

// allReaper is PID 1's reaper: on every SIGCHLD it collects all exited
// children with wait4(-1, WNOHANG). Tracked pids get their status; anything
// else (a function's orphaned grandchild, re-parented to PID 1) is reaped
// and logged. A fork happens under mu, so the reaper, which takes mu to look
// a pid up, cannot miss a registration. It must be the only waiter in the
// process.
type allReaper struct {
	log     zerolog.Logger
	mu      sync.Mutex
	tracked map[int]chan unix.WaitStatus
}

func newAllReaper(log zerolog.Logger) *allReaper {
	return &allReaper{log: log, tracked: make(map[int]chan unix.WaitStatus)}
}

func (r *allReaper) track(start func() (int, error)) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.tracked[pid] = ch
	return pid, ch, nil
}

func (r *allReaper) run(ctx context.Context) error {
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, unix.SIGCHLD)
	defer signal.Stop(sig)
	for {
		r.reapAll()
		select {
		case <-sig:
		case <-ctx.Done():
			r.reapAll()
			return nil
		}
	}
}

func (r *allReaper) reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children; 0: none exited
			return
		}
		r.mu.Lock()
		ch, ok := r.tracked[pid]
		delete(r.tracked, pid)
		r.mu.Unlock()
		if ok {
			ch <- ws
			continue
		}
		r.log.Debug().Int("pid", pid).Int("status", int(ws)).Msg("reaped orphan")
	}
}
