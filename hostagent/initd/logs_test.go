package initd

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLogSinkTailAndForward(t *testing.T) {
	var out bytes.Buffer
	l := newLogSink("c1", 16, 0, &out)
	l.write([]byte("hello\nwor"))
	m := l.mark(nil)
	l.write([]byte("ld\n"))
	if got := string(l.tail(m, 100)); got != "ld\n" {
		t.Fatalf("tail since mark = %q", got)
	}
	// Wrap around the 16-byte ring several times.
	m = l.mark(nil)
	l.write([]byte(strings.Repeat("abcdefgh", 5) + "\n"))
	if got := string(l.tail(m, 100)); got != "bcdefgh"+"abcdefgh"+"\n" {
		t.Fatalf("tail after wrap = %q", got)
	}
	if got := string(l.tail(m, 4)); got != "fgh\n" {
		t.Fatalf("tail capped = %q", got)
	}
	if got := l.tail(l.mark(nil), 100); got != nil {
		t.Fatalf("empty tail = %q", got)
	}
	// Lines go out prefixed; an over-long line is split at the ring size.
	want := "c1 hello\nc1 world\nc1 abcdefghabcdefgh\nc1 abcdefghabcdefgh\nc1 abcdefgh\n"
	if !strings.HasPrefix(out.String(), want) {
		t.Fatalf("forwarded %q", out.String())
	}
	l.write([]byte("no newline"))
	l.close()
	if !strings.HasSuffix(out.String(), "c1 no newline\n") {
		t.Fatalf("partial line not flushed on close: %q", out.String())
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{InstanceID: "i"}, true},
		{"no instance", Config{}, false},
		{"relative socket dir", Config{InstanceID: "i", SocketDir: "sock"}, false},
		{"bootstrap path", Config{InstanceID: "i", Bootstrap: "a/b"}, false},
		{"response over frame", Config{InstanceID: "i", MaxResponseBytes: 9 << 20}, false},
		{"tail over ring", Config{InstanceID: "i", LogRingBytes: 10, LogTailBytes: 20}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v", tc.name, err)
		}
	}
	c := Config{InstanceID: "i"}
	c.setDefaults()
	if c.TaskDir != "/var/task" || c.UID != 1000 || c.MaxResponseBytes != 6291556 || c.DefaultTimeout != 3*time.Second {
		t.Fatalf("defaults %+v", c)
	}
}

func TestLogSinkLimitPerWindow(t *testing.T) {
	var out bytes.Buffer
	l := newLogSink("c", 64, 10, &out)
	l.mark(nil)
	l.write([]byte("0123456\n"))
	l.write([]byte("789abc\nmore\n"))
	l.write([]byte("even more\n"))
	if got := l.truncated(); got != 10+10 {
		t.Fatalf("truncated = %d, want 20", got)
	}
	if got := out.String(); got != "c 0123456\nc 78\nc [ember] over 10 bytes of output: the rest of this invocation's output is dropped\n" {
		t.Fatalf("forwarded %q", got)
	}
	// The ring still has the latest output for the tail.
	if tail := string(l.tail(0, 10)); tail != "even more\n" {
		t.Fatalf("tail = %q", tail)
	}
	// A new window forwards again.
	l.mark(nil)
	l.write([]byte("next\n"))
	if l.truncated() != 0 || !strings.HasSuffix(out.String(), "c next\n") {
		t.Fatalf("after mark: %d, %q", l.truncated(), out.String())
	}
}

func TestRotatingFile(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/f.log"
	r, err := OpenRotating(p, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte(strings.Repeat("x", 39) + "\n")
	for range 20 {
		if _, err := r.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	var total int64
	for _, f := range []string{p, p + ".1", p + ".2"} {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if st.Size() > 100 {
			t.Fatalf("%s is %d bytes, over the 100 limit", f, st.Size())
		}
		total += st.Size()
	}
	if _, err := os.Stat(p + ".3"); err == nil {
		t.Fatal("more backups than asked for")
	}
	if total == 0 || total > 300 {
		t.Fatalf("%d bytes kept", total)
	}
}
