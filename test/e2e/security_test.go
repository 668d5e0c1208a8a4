package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/pki"
)

// TestPeerCodeNeedsAgentCertificate: emberd serves code to agents on other
// hosts only over mutual TLS with an agent certificate of its authority.
func TestPeerCodeNeedsAgentCertificate(t *testing.T) {
	s := newStack(t, "m128=1")
	fn := s.deploy("echo", "kafka-echo", wire.FunctionConfig{MemoryMB: 128})
	want, err := os.ReadFile(zips["kafka-echo"])
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.dir, "pki")
	ca, _, err := pki.LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	agentCert, err := ca.Issue(pki.RoleAgent, "remote-agent")
	if err != nil {
		t.Fatal(err)
	}
	emberdCert, _ := ca.Issue(pki.RoleEmberd, "another-emberd")
	foreign, _ := pki.NewPair("remote-agent")
	fetch := func(cert *tls.Certificate) ([]byte, error) {
		cfg := pki.ClientConfig(tls.Certificate{}, ca.Pool(), pki.RoleEmberd, "")
		cfg.Certificates = nil
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + s.peer + "/v1/code/" + fn.CodeDigest)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("peer answered %s", resp.Status)
		}
		return b, err
	}
	got, err := fetch(&agentCert)
	if err != nil {
		t.Fatalf("an agent of the authority: %v", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("fetched package %s differs from the deployed one", hex.EncodeToString(got[:8]))
	}
	for name, cert := range map[string]*tls.Certificate{
		"no certificate":          nil,
		"another authority":       &foreign.Agent,
		"an emberd, not an agent": &emberdCert,
	} {
		if _, err := fetch(cert); err == nil {
			t.Errorf("%s: code was served", name)
		}
	}
}
