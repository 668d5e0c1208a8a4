package emberd

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"time"

	"github.com/ember-run/ember/internal/pki"
)

// identity is this emberd's mutual-TLS identity towards agents.
type identity struct {
	cert  tls.Certificate
	roots *x509.CertPool
	ca    *pki.Authority
}

// loadIdentity reads (and on a first start creates) the authority in dir,
// and issues this emberd's certificate if it is missing.
func loadIdentity(dir string, hosts []string) (identity, error) {
	ca, _, err := pki.LoadOrCreateAuthority(dir)
	if err != nil {
		return identity{}, err
	}
	f, err := ca.EnsureIssued(dir, pki.RoleEmberd, pki.RoleEmberd, hosts...)
	if err != nil {
		return identity{}, err
	}
	cert, roots, err := f.Load()
	if err != nil {
		return identity{}, err
	}
	return identity{cert: cert, roots: roots, ca: ca}, nil
}

// agentTLS is the server configuration of the in-process agent: its own
// certificate, issued for agentID when missing.
func (id identity) agentTLS(dir, agentID string) (*tls.Config, error) {
	f, err := id.ca.EnsureIssued(dir, pki.RoleAgent, agentID, "127.0.0.1", "localhost")
	if err != nil {
		return nil, err
	}
	cert, roots, err := f.Load()
	if err != nil {
		return nil, err
	}
	return pki.ServerConfig(cert, roots, pki.RoleEmberd), nil
}

// peerServer serves what agents on other hosts fetch from emberd (function
// packages), only to clients with an agent certificate of the authority.
func (d *Daemon) peerServer(code http.Handler) *http.Server {
	return &http.Server{
		Handler:           code,
		TLSConfig:         pki.ServerConfig(d.id.cert, d.id.roots, pki.RoleAgent),
		ReadHeaderTimeout: 10 * time.Second,
	}
}
