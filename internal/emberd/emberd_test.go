package emberd

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/engine/tenants"
	"github.com/ember-run/ember/internal/testenv"
)

// TestNewFailsCleanly: a start-up that fails halfway (the gateway's
// address is taken) returns the error and releases what it opened; it
// once dereferenced the nil daemon it had just returned.
func TestNewFailsCleanly(t *testing.T) {
	_, redisAddr := testenv.Redis(t)
	b, err := embedded.Start(embedded.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	d, err := New(context.Background(), Config{StateDir: t.TempDir(), Redis: redisAddr, AdminKey: tenants.NewKey(),
		Brokers: b.Addrs(), Listen: "127.0.0.1:0", PeerListen: "127.0.0.1:0", GatewayListen: taken.Addr().String()})
	if err == nil || d != nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("New with the gateway's address taken = %v, %v", d, err)
	}
}
