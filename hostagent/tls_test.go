package hostagent

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ember-run/ember/internal/pki"
)

// testTLS is a fresh authority for an agent with id agentID: the agent's
// server configuration, and a dial option that connects as emberd.
func testTLS(t testing.TB, agentID string) (*pki.Pair, grpc.DialOption) {
	t.Helper()
	p, err := pki.NewPair(agentID)
	if err != nil {
		t.Fatal(err)
	}
	return p, grpc.WithTransportCredentials(credentials.NewTLS(p.EmberdClient()))
}
