package hostagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// socketRetry bounds a wait for a booting instance's socket between two
// dials: a safety net for a socket bound in place (an ember-init that does
// not rename it: it shows before it accepts), not the way the agent learns
// of it.
const socketRetry = 25 * time.Millisecond

// dirWatch tells when a name is created in, or renamed into, a directory
// (inotify). ember-init renames its socket into place once it listens. The
// zero dirWatch watches nothing: its waits last their bound.
type dirWatch struct{ f *os.File }

func watchDir(dir string) (*dirWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify %s: %w", dir, err)
	}
	// Non-blocking: the runtime's poller waits for it, under deadlines.
	return &dirWatch{f: os.NewFile(uintptr(fd), "inotify:"+dir)}, nil
}

// wait returns once names appeared since the last wait (at once if some
// did), after bound, or with ctx's error.
func (w *dirWatch) wait(ctx context.Context, bound time.Duration) error {
	if w.f == nil {
		t := time.NewTimer(bound)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	deadline := time.Now().Add(bound)
	if err := w.f.SetReadDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = w.f.SetReadDeadline(time.Now()) })
	defer stop()
	var buf [4096]byte // whole events; their names do not matter
	_, err := w.f.Read(buf[:])
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ctx.Err() // nil when only the bound passed
	}
	return err
}

// close releases the watch in the background: the kernel's release of an
// inotify instance waits for an RCU grace period (10-15 ms here), which the
// boot that used it need not wait for. The goroutine has no owner to wait
// for it on purpose: it only closes an fd nothing else uses, and ends.
func (w *dirWatch) close() {
	if w.f != nil {
		go w.f.Close()
	}
}
