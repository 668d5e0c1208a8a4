package initd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ember-run/ember/hostagent/logship"
	"golang.org/x/sys/unix"
)

// logSink collects one container's output: a ring of the most recent bytes
// (for Result.LogTail) and a line-prefixed copy to the server's Output. It
// outlives the container's processes; each process feeds it from its own
// pipe through a pipeReader.
type logSink struct {
	mu      sync.Mutex
	ring    []byte
	written int64 // total bytes ever written; ring holds the last len(ring)
	prefix  []byte
	partial []byte // current unterminated line, for Output
	out     io.Writer
	// window caps what goes to out between two marks (an invocation, or
	// the idle time between two): beyond limit bytes, output is dropped
	// (it still reaches the ring) and counted in dropped.
	limit, windowStart, dropped int64
	// ship, when set, also gets every line forwarded since the last mark
	// (the invocation's logging service).
	ship *shipTarget
}

// shipTarget is where an invocation's lines go besides out.
type shipTarget struct {
	ship       *logship.Shipper
	res        *logship.Resource
	invocation string
}

// newLogSink keeps the last size bytes and forwards at most limit bytes per
// window (0: no limit).
func newLogSink(containerID string, size int, limit int64, out io.Writer) *logSink {
	return &logSink{
		ring:   make([]byte, size),
		prefix: []byte(containerID + " "),
		out:    out,
		limit:  limit,
	}
}

// mark returns the current write position and starts a new window whose
// lines also go to ship (nil: nowhere else); tail(mark) returns what came
// after, truncated() what the window dropped.
func (l *logSink) mark(ship *shipTarget) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.windowStart, l.dropped, l.ship = l.written, 0, ship
	return l.written
}

// truncated is how many bytes of the current window were not forwarded.
func (l *logSink) truncated() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// tail returns up to max bytes written since mark (the last ones).
func (l *logSink) tail(mark int64, max int) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.written - mark
	if n > int64(max) {
		n = int64(max)
	}
	if n > int64(len(l.ring)) {
		n = int64(len(l.ring))
	}
	if n <= 0 {
		return nil
	}
	out := make([]byte, n)
	start := (l.written - n) % int64(len(l.ring))
	c := copy(out, l.ring[start:])
	copy(out[c:], l.ring)
	return out
}

// write appends p. Callers hold no lock.
func (l *logSink) write(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	size := int64(len(l.ring))
	q := p
	if int64(len(q)) > size {
		q = q[int64(len(q))-size:]
	}
	pos := (l.written + int64(len(p)) - int64(len(q))) % size
	c := copy(l.ring[pos:], q)
	copy(l.ring, q[c:])
	used := l.written - l.windowStart
	l.written += int64(len(p))
	if l.limit > 0 && used+int64(len(p)) > l.limit {
		keep := max(l.limit-used, 0)
		if l.dropped == 0 {
			l.forward(p[:keep])
			l.flushPartial()
			_, _ = l.out.Write(fmt.Appendf(append([]byte(nil), l.prefix...),
				"[ember] over %d bytes of output: the rest of this invocation's output is dropped\n", l.limit))
		}
		l.dropped += int64(len(p)) - keep
		return
	}
	l.forward(p)
}

// forward copies p to out, one prefixed line at a time. A line longer than
// the ring is split into ring-sized lines, so that memory stays bounded.
func (l *logSink) forward(p []byte) {
	for len(p) > 0 {
		room := len(l.ring) - len(l.partial)
		i := bytes.IndexByte(p, '\n')
		switch {
		case i >= 0 && i < room:
			l.partial = append(l.partial, p[:i+1]...)
			p = p[i+1:]
			l.flushPartial()
		case len(p) < room:
			l.partial = append(l.partial, p...)
			return
		default:
			l.partial = append(l.partial, p[:room]...)
			p = p[room:]
			l.flushPartial()
		}
	}
}

func (l *logSink) flushPartial() {
	if len(l.partial) == 0 {
		return
	}
	line := make([]byte, 0, len(l.prefix)+len(l.partial)+1)
	line = append(line, l.prefix...)
	line = append(line, l.partial...)
	if line[len(line)-1] != '\n' {
		line = append(line, '\n')
	}
	_, _ = l.out.Write(line)   // best effort: output loss must not stall a function
	if t := l.ship; t != nil { // never blocks: a full buffer drops and counts
		body := string(line[len(l.prefix) : len(line)-1])
		t.ship.Add(t.res, logship.Record{Time: time.Now(), Body: body, InvocationID: t.invocation})
	}
	l.partial = l.partial[:0]
}

// close flushes an unterminated last line.
func (l *logSink) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushPartial()
}

// pipeReader drains the read end of a process's stdout+stderr pipe into a
// logSink. Reads happen under mu, either from run (woken by the runtime
// poller) or from sync (called by an invocation that completed, so that
// everything the function wrote before answering is in the ring before the
// tail is taken: the write happened before the HTTP request that completed
// the invocation, so it is already in the pipe).
type pipeReader struct {
	f    *os.File
	sink *logSink
	mu   sync.Mutex
	buf  []byte
	eof  bool
}

func newPipeReader(f *os.File, sink *logSink) *pipeReader {
	return &pipeReader{f: f, sink: sink, buf: make([]byte, 32<<10)}
}

// drain reads until the pipe would block or ends. It reports whether the
// pipe ended. Called with fd valid (inside RawConn.Read/Control).
func (r *pipeReader) drain(fd uintptr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for !r.eof {
		n, err := unix.Read(int(fd), r.buf)
		switch {
		case n > 0:
			r.sink.write(r.buf[:n])
		case err == unix.EINTR:
		case err == unix.EAGAIN:
			return false
		default: // 0 bytes (EOF) or a real error: either way the pipe is done
			r.eof = true
		}
	}
	return true
}

// run drains the pipe until EOF, then closes it.
func (r *pipeReader) run() error {
	defer r.f.Close()
	defer r.sink.close()
	rc, err := r.f.SyscallConn()
	if err != nil {
		return err
	}
	err = rc.Read(func(fd uintptr) bool { return r.drain(fd) })
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}

// sync drains whatever is already in the pipe.
func (r *pipeReader) sync() {
	rc, err := r.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { r.drain(fd) })
}
