package logrelay

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"
)

func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return l.Addr().String()
}

func startRelay(t *testing.T, p Policy) (*Relay, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.sock")
	r, err := Listen(path, os.Getuid(), p, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	return r, path
}

// roundTrip sends the first line and a message; it returns what came back
// before the relay closed the connection.
func roundTrip(t *testing.T, path, id string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, id+"\nhello\n"); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line
}

func TestRelaysToAllowedService(t *testing.T) {
	addr := echoServer(t)
	r, path := startRelay(t, Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err := r.Allow("svc#1", "http://"+addr+"/v1/logs"); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, path, "svc#1"); got != "hello\n" {
		t.Fatalf("echo through the relay: %q", got)
	}
	if got := roundTrip(t, path, "other#1"); got != "" {
		t.Fatalf("an unregistered service was relayed: %q", got)
	}
}

func TestRefusesBlockedDestinations(t *testing.T) {
	addr := echoServer(t)
	r, path := startRelay(t, Policy{})
	if err := r.Allow("svc#1", "http://"+addr+"/v1/logs"); err != nil {
		t.Fatal(err)
	}
	if got := roundTrip(t, path, "svc#1"); got != "" {
		t.Fatalf("loopback reached without an allowed prefix: %q", got)
	}
}

func TestPolicy(t *testing.T) {
	p := Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	for a, want := range map[string]bool{
		"8.8.8.8": true, "127.0.0.1": false, "169.254.169.254": false, "10.1.2.3": true, "10.2.0.1": false,
		"192.168.1.1": false, "::1": false, "fe80::1": false, "2001:4860::8888": true, "::ffff:127.0.0.1": false,
	} {
		if got := p.Permits(netip.MustParseAddr(a)); got != want {
			t.Errorf("Permits(%s) = %v, want %v", a, got, want)
		}
	}
}

func TestAllowKeepsTheLatestServices(t *testing.T) {
	r, _ := startRelay(t, Policy{})
	for i := range maxTargets + 2 {
		if err := r.Allow(string(rune('a'+i)), "https://logs.example.com/v1/logs"); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := r.lookup("a"); ok {
		t.Fatal("the oldest service is still registered")
	}
	if addr, ok := r.lookup(string(rune('a' + maxTargets + 1))); !ok || addr != "logs.example.com:443" {
		t.Fatalf("latest: %q %v", addr, ok)
	}
	if err := r.Allow("x", "ftp://x"); err == nil {
		t.Fatal("an ftp endpoint was accepted")
	}
}
