package emberd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/ember-run/ember/engine/codepeers"
	"github.com/ember-run/ember/hostagent/codefetch"
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

// peerServer serves function packages to agents on other hosts and to the
// other emberd replicas, only to clients with an agent or emberd
// certificate of the authority.
func (d *Daemon) peerServer(code http.Handler) *http.Server {
	return &http.Server{
		Handler:           code,
		TLSConfig:         pki.ServerConfig(d.id.cert, d.id.roots, pki.RoleAgent, pki.RoleEmberd),
		ReadHeaderTimeout: 10 * time.Second,
	}
}

// codePeers shares this replica's packages with the others: it announces
// them under its peer URL (the peer listener's address, or PeerAdvertise)
// and fetches theirs on a miss.
func (d *Daemon) codePeers(ctx context.Context) (*codepeers.Peers, error) {
	self := ""
	if d.peerLis != nil {
		addr := d.cfg.PeerAdvertise
		if addr == "" {
			addr = d.peerLis.Addr().String()
			if h, port, err := net.SplitHostPort(addr); err == nil && net.ParseIP(h).IsUnspecified() {
				host, herr := os.Hostname()
				if herr != nil {
					return nil, fmt.Errorf("peer listener on %s: name the address other replicas reach (PeerAdvertise): %w", addr, herr)
				}
				addr = net.JoinHostPort(host, port)
			}
		}
		self = "https://" + addr
	}
	p, err := codepeers.New(d.rdb, d.code, codepeers.Config{
		Self: self, Log: d.cfg.Log,
		Client: &http.Client{Transport: &http.Transport{
			TLSClientConfig: pki.ClientConfig(d.id.cert, d.id.roots, pki.RoleEmberd, ""),
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := p.AnnounceAll(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// replicatedCode is the in-process agent's package source: this replica's
// store, filled from another replica on a miss.
type replicatedCode struct {
	peers *codepeers.Peers
	dir   codefetch.Dir
}

var _ codefetch.Source = replicatedCode{}

func (c replicatedCode) Fetch(ctx context.Context, digest string, w io.Writer) error {
	if err := c.peers.Ensure(ctx, digest); err != nil {
		return err
	}
	return c.dir.Fetch(ctx, digest, w)
}
