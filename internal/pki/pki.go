package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Roles a certificate can carry (as its subject's organizational unit).
const (
	RoleEmberd = "emberd"
	RoleAgent  = "agent"
)

// Validity of what Issue and NewAuthority make.
const (
	LeafValidity = 365 * 24 * time.Hour
	CAValidity   = 10 * 365 * 24 * time.Hour
)

// Authority signs role certificates. Its key may be absent (an operator's
// CA whose key stays elsewhere): then it can verify but not issue.
type Authority struct {
	Cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool
}

// Pool is the authority as a trust root.
func (a *Authority) Pool() *x509.CertPool { return a.pool }

// CanIssue reports whether the authority holds its key.
func (a *Authority) CanIssue() bool { return a.key != nil }

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// NewAuthority makes a fresh authority in memory.
func NewAuthority() (*Authority, error) {
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "Ember CA", Organization: []string{"Ember"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return newAuthority(cert, key), nil
}

func newAuthority(cert *x509.Certificate, key crypto.Signer) *Authority {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &Authority{Cert: cert, key: key, pool: pool}
}

// Issue makes a certificate for role and name, valid for TLS clients and
// servers, with hosts (DNS names or IP addresses) as extra subject names.
func (a *Authority) Issue(role, name string, hosts ...string) (tls.Certificate, error) {
	if a.key == nil {
		return tls.Certificate{}, errors.New("pki: the authority's key is not here: it cannot issue")
	}
	if role != RoleEmberd && role != RoleAgent {
		return tls.Certificate{}, fmt.Errorf("pki: role %q: want %q or %q", role, RoleEmberd, RoleAgent)
	}
	if name == "" {
		return tls.Certificate{}, errors.New("pki: a certificate needs a name")
	}
	key, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	sn, err := serial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{role}, Organization: []string{"Ember"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(LeafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range append([]string{name}, hosts...) {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" && !slices.Contains(tmpl.DNSNames, h) {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, key.Public(), a.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Files names an identity on disk: the authority's certificate and one
// role certificate with its key.
type Files struct {
	CA, Cert, Key string
}

// InDir is name's files in dir: ca.crt, name.crt, name.key.
func InDir(dir, name string) Files {
	return Files{CA: filepath.Join(dir, "ca.crt"), Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key")}
}

// Load reads an identity: its certificate and key, and the authority it
// trusts.
func (f Files) Load() (tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("pki: %w", err)
	}
	b, err := os.ReadFile(f.CA)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("pki: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return tls.Certificate{}, nil, fmt.Errorf("pki: %s holds no certificate", f.CA)
	}
	return cert, pool, nil
}

// LoadOrCreateAuthority reads dir/ca.crt (and dir/ca.key if there), or
// creates both when neither exists. created reports a new authority.
func LoadOrCreateAuthority(dir string) (a *Authority, created bool, err error) {
	crtPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	crt, err := os.ReadFile(crtPath)
	if errors.Is(err, fs.ErrNotExist) {
		if a, err = NewAuthority(); err != nil {
			return nil, false, err
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, false, err
		}
		if err := writeKey(keyPath, a.key); err != nil {
			return nil, false, err
		}
		if err := writePEM(crtPath, "CERTIFICATE", a.Cert.Raw, 0o644); err != nil {
			return nil, false, err
		}
		return a, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pki: %w", err)
	}
	blk, _ := pem.Decode(crt)
	if blk == nil {
		return nil, false, fmt.Errorf("pki: %s is not PEM", crtPath)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, false, fmt.Errorf("pki: %s: %w", crtPath, err)
	}
	var key crypto.Signer
	if kb, err := os.ReadFile(keyPath); err == nil {
		if key, err = parseKey(kb); err != nil {
			return nil, false, fmt.Errorf("pki: %s: %w", keyPath, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("pki: %w", err)
	}
	return newAuthority(cert, key), false, nil
}

// EnsureIssued returns name's files in dir, issuing them with a when they
// are missing, unreadable, not from a, or within 30 days of expiry.
func (a *Authority) EnsureIssued(dir, role, name string, hosts ...string) (Files, error) {
	f := InDir(dir, name)
	if cert, pool, err := f.Load(); err == nil && cert.Leaf != nil && time.Until(cert.Leaf.NotAfter) > 30*24*time.Hour {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err == nil &&
			slices.Contains(cert.Leaf.Subject.OrganizationalUnit, role) && cert.Leaf.CheckSignatureFrom(a.Cert) == nil {
			return f, nil
		}
	}
	if !a.CanIssue() {
		return Files{}, fmt.Errorf("pki: %s is missing or invalid, and the authority's key is not in %s to issue it", f.Cert, dir)
	}
	cert, err := a.Issue(role, name, hosts...)
	if err != nil {
		return Files{}, err
	}
	if err := WriteFiles(dir, name, a, cert); err != nil {
		return Files{}, err
	}
	return f, nil
}

// WriteFiles writes cert as dir/name.crt and .key, and the authority's
// certificate as dir/ca.crt.
func WriteFiles(dir, name string, a *Authority, cert tls.Certificate) error {
	f := InDir(dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := writeKey(f.Key, cert.PrivateKey.(crypto.Signer)); err != nil {
		return err
	}
	if err := writePEM(f.Cert, "CERTIFICATE", cert.Certificate[0], 0o644); err != nil {
		return err
	}
	if _, err := os.Stat(f.CA); errors.Is(err, fs.ErrNotExist) {
		return writePEM(f.CA, "CERTIFICATE", a.Cert.Raw, 0o644)
	}
	return nil
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der, 0o600)
}

func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
	}
	return s, nil
}

// writePEM writes atomically with mode perm.
func writePEM(path, typ string, der []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), perm); err != nil {
		return err
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
