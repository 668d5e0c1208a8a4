package initproto

import (
	"bytes"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// socketPair returns both ends of a unix stream socket pair.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "sock")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.UnixConn)
	}
	return conn(fds[0]), conn(fds[1])
}

// FuzzRead: any byte stream from a peer yields frames or an error, never a
// panic, a hang or a frame that reaches past what was sent.
func FuzzRead(f *testing.F) {
	f.Add([]byte{0, 0, 0, 9, 1, 0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 11, 4, 0, 0, 0, 7, 0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 9, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, stream []byte) {
		a, b := socketPair(t)
		defer a.Close()
		go func() {
			_, _ = b.Write(stream)
			b.Close()
		}()
		c := NewConn(a)
		total := 0
		for {
			fr, err := c.Read()
			if err != nil {
				return
			}
			total += 13 + len(fr.Header) + len(fr.Body)
			if total > len(stream) {
				t.Fatalf("frames hold %d bytes, more than the %d sent", total, len(stream))
			}
			if len(fr.FDs) != 0 {
				t.Fatalf("fds out of nowhere: %v", fr.FDs)
			}
		}
	})
}

// FuzzRoundTrip: what Write sends, Read returns unchanged.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint8(TypeInvoke), uint32(7), "inv-1", []byte(`{"a":1}`))
	f.Add(uint8(0), uint32(0), "", []byte(nil))
	f.Add(uint8(255), uint32(1<<31), "\x00\"\\", bytes.Repeat([]byte{0xff}, 70000))
	f.Fuzz(func(t *testing.T, typ uint8, seq uint32, id string, body []byte) {
		w, r := socketPair(t)
		defer w.Close()
		defer r.Close()
		wc, rc := NewConn(w), NewConn(r)
		errc := make(chan error, 1)
		go func() { errc <- wc.Write(Type(typ), seq, Invoke{ID: id}, body) }()
		fr, err := rc.Read()
		if werr := <-errc; werr != nil {
			t.Fatal(werr)
		}
		if err != nil {
			t.Fatal(err)
		}
		var inv Invoke
		if err := fr.Decode(&inv); err != nil {
			t.Fatal(err)
		}
		if fr.Type != Type(typ) || fr.Seq != seq || !bytes.Equal(fr.Body, body) || (inv.ID != id && validUTF8(id)) {
			t.Fatalf("round trip: %d %d %q %q", fr.Type, fr.Seq, inv.ID, fr.Body)
		}
	})
}

func validUTF8(s string) bool { return bytes.Equal([]byte(s), []byte(string([]rune(s)))) }
