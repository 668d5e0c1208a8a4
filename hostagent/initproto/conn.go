package initproto

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// MaxFrame bounds one frame (header and body): 8 MiB, above Lambda's 6 MB
// payload limit.
const MaxFrame = 8 << 20

const (
	prefixLen = 4 + 1 + 4 + 4 // length, type, seq, header length
	maxFDs    = 16
)

// ErrFrameTooLarge is returned for a frame over MaxFrame.
var ErrFrameTooLarge = errors.New("initproto: frame too large")

// Frame is one decoded message.
type Frame struct {
	Type   Type
	Seq    uint32
	Header []byte // JSON
	Body   []byte
	// FDs are the descriptors that arrived with this frame. The receiver owns
	// them and must close them.
	FDs []int
}

// Decode unmarshals the frame's header into v, from JSON or from the wire
// format (see wire.go).
func (f *Frame) Decode(v any) error {
	if f.Wire() {
		r, ok := v.(wireReader)
		if !ok {
			return fmt.Errorf("%w: %T has no wire format", errWire, v)
		}
		return r.readWire(f.Header[1:])
	}
	if err := json.Unmarshal(f.Header, v); err != nil {
		return fmt.Errorf("initproto: decode %T: %w", v, err)
	}
	return nil
}

// Wire reports whether the header is in the wire format.
func (f *Frame) Wire() bool { return len(f.Header) > 0 && f.Header[0] == wireMark }

// Conn frames messages over a unix stream socket. Writes are serialised; a
// single goroutine must own reads.
type Conn struct {
	c       *net.UnixConn
	wmu     sync.Mutex
	wbuf    []byte
	rbuf    []byte // read buffer; rbuf[r:w] is read but not yet consumed
	r, w    int
	oob     []byte
	pending []fdChunk // fds received, not yet given to their frame
	// at is the stream offset of rbuf[r]: bytes consumed so far.
	at int64
	// wire: headers that have a wire format are written in it.
	wire atomic.Bool
}

// fdChunk is fds received with the stream's bytes [from, to). The kernel
// hands fds over with the bytes of the write that carried them and ends
// that receive there, so they belong to the last frame starting in the
// chunk: the frame that starts in it and reaches its end.
type fdChunk struct {
	fds      []int
	from, to int64
}

// NewConn wraps an established unix stream connection.
func NewConn(c *net.UnixConn) *Conn {
	return &Conn{c: c, oob: make([]byte, unix.CmsgSpace(maxFDs*4))}
}

// UseWire makes Write send headers that have a wire format (Invoke,
// Result) in it from now on: call it once the peer showed it reads them.
func (c *Conn) UseWire() { c.wire.Store(true) }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Write sends one frame. header is JSON-encoded, or in the wire format
// after UseWire if it has one; fds are passed with SCM_RIGHTS and stay
// owned by the caller.
func (c *Conn) Write(t Type, seq uint32, header any, body []byte, fds ...int) error {
	if len(fds) > maxFDs {
		return fmt.Errorf("initproto: %d fds, at most %d", len(fds), maxFDs)
	}
	var h []byte
	w, wire := header.(wireAppender)
	wire = wire && c.wire.Load()
	if !wire {
		var err error
		if h, err = json.Marshal(header); err != nil {
			return fmt.Errorf("initproto: encode %T: %w", header, err)
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	buf := append(c.wbuf[:0], make([]byte, prefixLen)...)
	if wire {
		buf = w.appendWire(append(buf, wireMark))
	} else {
		buf = append(buf, h...)
	}
	hl := len(buf) - prefixLen
	n := 1 + 4 + 4 + hl + len(body)
	if n > MaxFrame {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
	}
	binary.BigEndian.PutUint32(buf, uint32(n))
	buf[4] = byte(t)
	binary.BigEndian.PutUint32(buf[5:], seq)
	binary.BigEndian.PutUint32(buf[9:], uint32(hl))
	buf = append(buf, body...)
	if cap(buf) <= 64<<10 {
		c.wbuf = buf
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	// The first write carries the fds; they are attached to its first byte,
	// so the reader sees them no later than the frame's start.
	wn, _, err := c.c.WriteMsgUnix(buf, oob, nil)
	if err != nil {
		return fmt.Errorf("initproto: write: %w", err)
	}
	for wn < len(buf) {
		m, err := c.c.Write(buf[wn:])
		if err != nil {
			return fmt.Errorf("initproto: write: %w", err)
		}
		wn += m
	}
	return nil
}

// Read returns the next frame, with the fds written with it (never those
// of a frame written after it that one receive brought along).
func (c *Conn) Read() (*Frame, error) {
	if err := c.fill(4); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(c.rbuf[c.r:]))
	if n > MaxFrame || n < prefixLen-4 {
		return nil, fmt.Errorf("%w or malformed: %d bytes", ErrFrameTooLarge, n)
	}
	if err := c.fill(4 + n); err != nil {
		return nil, err
	}
	b := c.rbuf[c.r+4 : c.r+4+n]
	f := &Frame{Type: Type(b[0]), Seq: binary.BigEndian.Uint32(b[1:5])}
	hl := int(binary.BigEndian.Uint32(b[5:9]))
	if hl > len(b)-9 {
		return nil, fmt.Errorf("initproto: header length %d exceeds frame", hl)
	}
	f.Header = append([]byte(nil), b[9:9+hl]...)
	f.Body = append([]byte(nil), b[9+hl:]...)
	f.FDs = c.claimFDs(c.at, c.at+4+int64(n))
	c.r += 4 + n
	c.at += 4 + int64(n)
	if c.r == c.w {
		c.r, c.w = 0, 0
	}
	return f, nil
}

// readChunk is the most one read asks for beyond what the frame needs.
const readChunk = 64 << 10

// fill reads until the buffer holds at least n unconsumed bytes, collecting
// any fds. The buffer is reused across frames and grows only for large ones.
func (c *Conn) fill(n int) error {
	for c.w-c.r < n {
		if len(c.rbuf)-c.r < max(n, readChunk) {
			size := max(len(c.rbuf), n+readChunk)
			if size > len(c.rbuf) || c.r > 0 {
				buf := c.rbuf
				if size > len(c.rbuf) {
					buf = make([]byte, size)
				}
				copy(buf, c.rbuf[c.r:c.w])
				c.rbuf, c.w, c.r = buf, c.w-c.r, 0
			}
		}
		m, oobn, _, _, err := c.c.ReadMsgUnix(c.rbuf[c.w:], c.oob)
		m, oobn = max(m, 0), max(oobn, 0) // -1 on a failed recvmsg (e.g. ECONNRESET)
		if oobn > 0 {
			fds, perr := parseRights(c.oob[:oobn])
			from := c.at + int64(c.w-c.r)
			c.pending = append(c.pending, fdChunk{fds: fds, from: from, to: from + int64(m)})
			if perr != nil {
				return perr
			}
		}
		c.w += m
		if err != nil {
			if errors.Is(err, io.EOF) && c.w == c.r {
				return io.EOF
			}
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return fmt.Errorf("initproto: read: %w", err)
		}
		if m == 0 && oobn == 0 {
			if c.w == c.r {
				return io.EOF
			}
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}

// claimFDs takes the pending fds of the frame that spans the stream's
// bytes [start, end); fds of chunks that ended before it (no frame of
// theirs: a peer's mistake) are closed.
func (c *Conn) claimFDs(start, end int64) []int {
	var fds []int
	keep := c.pending[:0]
	for _, ch := range c.pending {
		switch {
		case ch.to <= start:
			for _, fd := range ch.fds {
				_ = unix.Close(fd)
			}
		case ch.from <= start && end >= ch.to:
			fds = append(fds, ch.fds...)
		default:
			keep = append(keep, ch)
		}
	}
	c.pending = keep
	return fds
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("initproto: control message: %w", err)
	}
	var fds []int
	for _, m := range msgs {
		r, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		fds = append(fds, r...)
	}
	return fds, nil
}
