package initproto

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan *net.UnixConn, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			done <- nil
			return
		}
		done <- c
	}()
	a, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	b := <-done
	if b == nil {
		t.Fatal("accept failed")
	}
	ca, cb := NewConn(a), NewConn(b)
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return ca, cb
}

func TestRoundTripWithFDsAndLargeBody(t *testing.T) {
	a, b := pair(t)
	f, err := os.CreateTemp(t.TempDir(), "fd")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	big := bytes.Repeat([]byte("x"), 3<<20)
	go func() {
		_ = a.Write(TypeStart, 7, StartContainer{ContainerID: "c1", FDNames: []string{FDCgroup2}}, nil, int(f.Fd()))
		_ = a.Write(TypeInvoke, 8, Invoke{ID: "i1"}, big)
	}()
	fr, err := b.Read()
	if err != nil {
		t.Fatal(err)
	}
	var sc StartContainer
	if err := fr.Decode(&sc); err != nil {
		t.Fatal(err)
	}
	if fr.Type != TypeStart || fr.Seq != 7 || sc.ContainerID != "c1" || len(fr.FDs) != 1 {
		t.Fatalf("got type %d seq %d %+v fds %v", fr.Type, fr.Seq, sc, fr.FDs)
	}
	var st1, st2 unixStat
	if err := fstat(fr.FDs[0], &st2); err != nil {
		t.Fatal(err)
	}
	if err := fstat(int(f.Fd()), &st1); err != nil {
		t.Fatal(err)
	}
	if st1.Ino != st2.Ino {
		t.Fatalf("received fd refers to another file")
	}
	closeFD(fr.FDs[0])
	fr, err = b.Read()
	if err != nil {
		t.Fatal(err)
	}
	if fr.Type != TypeInvoke || !bytes.Equal(fr.Body, big) || len(fr.FDs) != 0 {
		t.Fatalf("invoke frame: type %d body %d fds %v", fr.Type, len(fr.Body), fr.FDs)
	}
}

func TestFrameTooLarge(t *testing.T) {
	a, _ := pair(t)
	err := a.Write(TypeInvoke, 1, Invoke{}, make([]byte, MaxFrame))
	if err == nil {
		t.Fatal("oversized frame was accepted")
	}
}

func TestManyFramesReuseBuffer(t *testing.T) {
	a, b := pair(t)
	const n = 2000
	go func() {
		for i := 0; i < n; i++ {
			_ = a.Write(TypeResult, uint32(i+1), Result{ID: "x"}, bytes.Repeat([]byte{byte(i)}, i%700))
		}
	}()
	for i := 0; i < n; i++ {
		f, err := b.Read()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Seq != uint32(i+1) || len(f.Body) != i%700 || (len(f.Body) > 0 && f.Body[0] != byte(i)) {
			t.Fatalf("frame %d: seq %d body %d", i, f.Seq, len(f.Body))
		}
	}
}

func TestReadAfterPeerCloses(t *testing.T) {
	a, b := pair(t)
	_ = a.Write(TypeHello, 0, Hello{InstanceID: "i"}, nil)
	a.Close()
	if _, err := b.Read(); err != nil {
		t.Fatalf("buffered frame lost: %v", err)
	}
	if _, err := b.Read(); err == nil {
		t.Fatal("read after close succeeded")
	}
}

// TestFDsGoWithTheirFrame: frames written back to back, only some with
// fds, reach the reader in one receive; each frame gets exactly the fds
// written with it (a Start's cgroup fds once went to the Invoke before it,
// and the Start arrived with none).
func TestFDsGoWithTheirFrame(t *testing.T) {
	a, b := pair(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	// Written before anything is read: the kernel may hand them over in
	// one receive (it does here: the first frame has no fds).
	want := []int{0, 2, 0, 0, 1}
	for i, n := range want {
		fds := []int{fd, fd}[:n]
		if err := a.Write(TypeInvoke, uint32(i), map[string]int{"i": i}, []byte("body"), fds...); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range want {
		fr, err := b.Read()
		if err != nil {
			t.Fatal(err)
		}
		if fr.Seq != uint32(i) || len(fr.FDs) != n {
			t.Fatalf("frame %d (seq %d) came with %d fds, want %d", i, fr.Seq, len(fr.FDs), n)
		}
		for _, got := range fr.FDs {
			os.NewFile(uintptr(got), "received").Close()
		}
	}
}
