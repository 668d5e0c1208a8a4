package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
)

// ServerConfig serves with cert and accepts only clients whose certificate
// chains to roots and carries one of peerRoles.
func ServerConfig(cert tls.Certificate, roots *x509.CertPool, peerRoles ...string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		VerifyConnection: func(cs tls.ConnectionState) error {
			var err error
			for _, role := range peerRoles {
				if err = checkPeer(cs, role, ""); err == nil {
					return nil
				}
			}
			return err
		},
	}
}

// ClientConfig presents cert and accepts only a server whose certificate
// chains to roots, carries peerRole and, unless peerName is empty, is named
// peerName. Names are checked against the certificate's common name and
// subject names, not against the address dialled: an agent is known by its
// id wherever it listens.
func ClientConfig(cert tls.Certificate, roots *x509.CertPool, peerRole, peerName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      roots,
		// The chain is verified below, by name rather than by address.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("pki: the server presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
				Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			}); err != nil {
				return fmt.Errorf("pki: server certificate: %w", err)
			}
			return checkPeer(cs, peerRole, peerName)
		},
	}
}

// checkPeer checks the (already chain-verified) peer certificate's role
// and name.
func checkPeer(cs tls.ConnectionState, role, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("pki: the peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if !slices.Contains(leaf.Subject.OrganizationalUnit, role) {
		return fmt.Errorf("pki: peer %q is not a%s %s", leaf.Subject.CommonName, article(role), role)
	}
	if name != "" && leaf.Subject.CommonName != name && !slices.Contains(leaf.DNSNames, name) {
		return fmt.Errorf("pki: peer certificate is for %q, want %q", leaf.Subject.CommonName, name)
	}
	return nil
}

func article(role string) string {
	if role == RoleAgent || role == RoleEmberd {
		return "n"
	}
	return ""
}
