package initd

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestLogSinkTailAndForward(t *testing.T) {
	var out bytes.Buffer
	l := newLogSink("c1", 16, &out)
	l.write([]byte("hello\nwor"))
	m := l.mark()
	l.write([]byte("ld\n"))
	if got := string(l.tail(m, 100)); got != "ld\n" {
		t.Fatalf("tail since mark = %q", got)
	}
	// Wrap around the 16-byte ring several times.
	m = l.mark()
	l.write([]byte(strings.Repeat("abcdefgh", 5) + "\n"))
	if got := string(l.tail(m, 100)); got != "bcdefgh"+"abcdefgh"+"\n" {
		t.Fatalf("tail after wrap = %q", got)
	}
	if got := string(l.tail(m, 4)); got != "fgh\n" {
		t.Fatalf("tail capped = %q", got)
	}
	if got := l.tail(l.mark(), 100); got != nil {
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
