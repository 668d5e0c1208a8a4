package network_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/hostagent/network"
	"github.com/ember-run/ember/internal/netnstest"
)

// TestEgressAndFirewall attaches two namespaces to a bridge and checks what
// they reach: an outside server on a public-like address, and one on a
// private address only once it is allowed; never the host's own services,
// whatever address they listen on, and never each other.
func TestEgressAndFirewall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the network test needs root (namespaces, bridges, nftables)")
	}
	ctx := context.Background()
	tag := fmt.Sprintf("%d", os.Getpid()%10000)
	outside := netnstest.NewOutside(t, "embt"+tag, "198.51.100.7/24", "10.123.45.7/24")
	outside.Serve(t, "198.51.100.7:8080", "public")
	outside.Serve(t, "10.123.45.7:8080", "private")

	// A host service on every address, as a careless daemon would bind.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	hostSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("host\n")) }), ReadHeaderTimeout: time.Second}
	go func() { _ = hostSrv.Serve(ln) }()
	t.Cleanup(func() { _ = hostSrv.Close() })
	hostPort := ln.Addr().(*net.TCPAddr).Port

	n := setUp(t, network.Config{Bridge: "embtb" + tag, Subnet: "10.202.7.0/24", StateDir: t.TempDir() + "/net"})
	a, b := netnstest.New(t), netnstest.New(t)
	atA, err := n.Attach(ctx, "ca", netnstest.Path(a))
	if err != nil {
		t.Fatal(err)
	}
	atB, err := n.Attach(ctx, "cb", netnstest.Path(b))
	if err != nil {
		t.Fatal(err)
	}
	// B serves, as a container's process could.
	var lnB net.Listener
	if err := netnstest.In(b, func() error {
		var err error
		lnB, err = net.Listen("tcp", "0.0.0.0:8081")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srvB := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("b\n")) }), ReadHeaderTimeout: time.Second}
	go func() { _ = srvB.Serve(lnB) }()
	t.Cleanup(func() { _ = srvB.Close() })

	const short = 700 * time.Millisecond
	if got, err := netnstest.Get(a, "http://198.51.100.7:8080/", 5*time.Second); err != nil || got != "public" {
		t.Fatalf("egress to a public address: %q, %v", got, err)
	}
	for name, url := range map[string]string{
		"private network":        "http://10.123.45.7:8080/",
		"host on the gateway IP": fmt.Sprintf("http://%s:%d/", atA.Gateway, hostPort),
		"host on its loopback":   fmt.Sprintf("http://127.0.0.1:%d/", hostPort),
		"the other container":    fmt.Sprintf("http://%s:8081/", atB.Addr.Addr()),
		"cloud metadata":         "http://169.254.169.254/",
	} {
		if got, err := netnstest.Get(a, url, short); err == nil {
			t.Errorf("%s (%s) answered %q", name, url, got)
		}
	}

	// With the private prefix allowed, the second server answers too.
	n2, err := network.New(network.Config{Bridge: "embtb" + tag, Subnet: "10.202.7.0/24", StateDir: t.TempDir() + "/net2",
		Allow: []netip.Prefix{netip.MustParsePrefix("10.123.45.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Setup(ctx, nil); err != nil {
		t.Fatal(err)
	}
	c := netnstest.New(t)
	if _, err := n2.Attach(ctx, "cc", netnstest.Path(c)); err != nil {
		t.Fatal(err)
	}
	if got, err := netnstest.Get(c, "http://10.123.45.7:8080/", 5*time.Second); err != nil || got != "private" {
		t.Fatalf("allowed private address: %q, %v", got, err)
	}
	if got, err := netnstest.Get(c, fmt.Sprintf("http://%s:%d/", atA.Gateway, hostPort), short); err == nil {
		t.Errorf("the host answered an allowed-network container: %q", got)
	}
	for _, d := range []struct {
		n  *network.Network
		id string
		fd int
	}{{n, "ca", a}, {n, "cb", b}, {n2, "cc", c}} {
		if err := d.n.Detach(ctx, d.id, netnstest.Path(d.fd)); err != nil {
			t.Errorf("detach %s: %v", d.id, err)
		}
	}
	if err := n.Detach(ctx, "ca", netnstest.Path(a)); err != nil {
		t.Errorf("second detach: %v", err)
	}
	if out, _ := exec.Command("nft", "list", "table", "inet", "ember-embtb"+tag).CombinedOutput(); !strings.Contains(string(out), "masquerade") {
		t.Errorf("nft table:\n%s", out)
	}
}

// TestSetupKeepsOnlyKeptAttachments: a Setup after a restart that took some
// containers back keeps their address allocations and cached results (the
// plugins' own files) and removes every other attachment's.
func TestSetupKeepsOnlyKeptAttachments(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the network test needs root (namespaces, bridges, nftables)")
	}
	ctx := context.Background()
	tag := fmt.Sprintf("%d", os.Getpid()%10000)
	dir := t.TempDir() + "/net"
	cfg := network.Config{Bridge: "embtk" + tag, Subnet: "10.202.9.0/24", StateDir: dir}
	n := setUp(t, cfg)
	a, b := netnstest.New(t), netnstest.New(t)
	if _, err := n.Attach(ctx, "keep-me", netnstest.Path(a)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Attach(ctx, "gone", netnstest.Path(b)); err != nil {
		t.Fatal(err)
	}
	owners := func() []string { // the containers the state directory names
		var out []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			raw, _ := os.ReadFile(p)
			for _, id := range []string{"keep-me", "gone"} {
				if strings.Contains(filepath.Base(p), id) || strings.HasPrefix(string(raw), id) {
					out = append(out, id)
				}
			}
			return nil
		})
		slices.Sort(out)
		return out
	}
	if got := owners(); !slices.Equal(got, []string{"gone", "gone", "keep-me", "keep-me"}) {
		t.Fatalf("after two attachments the state names %v, want each twice (address, cached result)", got)
	}
	again, err := network.New(cfg) // the next life of the agent
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Setup(ctx, map[string]bool{"keep-me": true}); err != nil {
		t.Fatal(err)
	}
	if got := owners(); !slices.Equal(got, []string{"keep-me", "keep-me"}) {
		t.Fatalf("after Setup keeping one attachment the state names %v", got)
	}
	if err := again.Detach(ctx, "keep-me", netnstest.Path(a)); err != nil {
		t.Fatalf("detach the kept attachment: %v", err)
	}
	if got := owners(); len(got) != 0 {
		t.Fatalf("after its detach the state still names %v", got)
	}
}

// setUp makes a network with cfg and sets it up; the test's end closes it
// and removes its bridge.
func setUp(t *testing.T, cfg network.Config) *network.Network {
	t.Helper()
	ctx := context.Background()
	n, err := network.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Setup(ctx, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = n.Close(ctx)
		_ = exec.Command("ip", "link", "del", cfg.Bridge).Run()
	})
	return n
}
