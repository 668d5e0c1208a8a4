package pki

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// handshake runs one TLS handshake over a pipe and returns the client's and
// the server's errors.
func handshake(t *testing.T, client, server *tls.Config) (cerr, serr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		s, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		srv := tls.Server(s, server)
		err = srv.Handshake()
		if err == nil {
			// TLS 1.3: the client's certificate is checked after the
			// client's handshake returns; read to surface the result.
			_, err = srv.Read(make([]byte, 1))
		}
		s.Close()
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cl := tls.Client(c, client)
	cerr = cl.Handshake()
	if cerr == nil {
		_, cerr = cl.Write([]byte{1})
	}
	c.Close()
	return cerr, <-done
}

func TestMutualTLS(t *testing.T) {
	ca, err := NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewAuthority()
	must := func(a *Authority, role, name string) tls.Certificate {
		c, err := a.Issue(role, name, "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	emberd, agent := must(ca, RoleEmberd, "emberd"), must(ca, RoleAgent, "a1")
	agentSrv := ServerConfig(agent, ca.Pool(), RoleEmberd)

	if cerr, serr := handshake(t, ClientConfig(emberd, ca.Pool(), RoleAgent, "a1"), agentSrv); cerr != nil || serr != nil {
		t.Fatalf("emberd to its agent: client %v, server %v", cerr, serr)
	}
	for name, tc := range map[string]struct {
		client *tls.Config
		server *tls.Config
	}{
		"agent posing as emberd":         {ClientConfig(must(ca, RoleAgent, "a2"), ca.Pool(), RoleAgent, "a1"), agentSrv},
		"emberd of another authority":    {ClientConfig(must(other, RoleEmberd, "emberd"), ca.Pool(), RoleAgent, "a1"), agentSrv},
		"client without a certificate":   {&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}, agentSrv},
		"agent of another authority":     {ClientConfig(emberd, ca.Pool(), RoleAgent, "a1"), ServerConfig(must(other, RoleAgent, "a1"), other.Pool(), RoleEmberd)},
		"agent answering for another id": {ClientConfig(emberd, ca.Pool(), RoleAgent, "a1"), ServerConfig(must(ca, RoleAgent, "a9"), ca.Pool(), RoleEmberd)},
		"emberd cert where agent is due": {ClientConfig(emberd, ca.Pool(), RoleAgent, "a1"), ServerConfig(must(ca, RoleEmberd, "a1"), ca.Pool(), RoleEmberd)},
	} {
		cerr, serr := handshake(t, tc.client, tc.server)
		if cerr == nil && serr == nil {
			t.Errorf("%s: handshake succeeded", name)
		}
	}
}

func TestFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	a, created, err := LoadOrCreateAuthority(dir)
	if err != nil || !created || !a.CanIssue() {
		t.Fatalf("create = %v, %v, %v", a, created, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key: %v, %v", st, err)
	}
	f, err := a.EnsureIssued(dir, RoleAgent, "a1", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cert, pool, err := f.Load()
	if err != nil || cert.Leaf.Subject.CommonName != "a1" || len(cert.Leaf.IPAddresses) != 1 {
		t.Fatalf("load = %+v, %v", cert.Leaf, err)
	}
	if st, err := os.Stat(f.Key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", st, err)
	}
	before, _ := os.ReadFile(f.Cert)
	if _, err := a.EnsureIssued(dir, RoleAgent, "a1"); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(f.Cert)
	if string(before) != string(after) {
		t.Fatal("a valid certificate was issued again")
	}
	// Reloaded, the authority verifies what it issued; without its key it
	// cannot issue.
	b, created, err := LoadOrCreateAuthority(dir)
	if err != nil || created {
		t.Fatalf("reload = %v, %v", created, err)
	}
	if _, err := cert.Leaf.Verify(x509Opts(b)); err != nil {
		t.Fatal(err)
	}
	_ = pool
	if err := os.Remove(filepath.Join(dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	c, _, err := LoadOrCreateAuthority(dir)
	if err != nil || c.CanIssue() {
		t.Fatalf("without ca.key: %v, %v", c.CanIssue(), err)
	}
	if _, err := c.EnsureIssued(dir, RoleAgent, "a2"); err == nil {
		t.Fatal("issued without the authority's key")
	}
}

func x509Opts(a *Authority) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: a.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
}
