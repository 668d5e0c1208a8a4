// Package redisconn turns the --redis flag of emberd and ember-agent into
// client options: "host:port" on a trusted network (the loopback default),
// or a redis:// or rediss:// URL; rediss:// speaks TLS, verified against
// the system roots or the given CA file, so that registry records (function
// environments among them) never cross a network in clear text.
package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Options parses addr; caFile (optional) is the PEM CA a rediss:// server's
// certificate must chain to.
func Options(addr, caFile string) (*redis.Options, error) {
	if !strings.Contains(addr, "://") {
		if caFile != "" {
			return nil, fmt.Errorf("redis %q: a CA file needs a rediss:// URL", addr)
		}
		return &redis.Options{Addr: addr}, nil
	}
	o, err := redis.ParseURL(addr)
	if err != nil {
		return nil, fmt.Errorf("redis URL: %w", err)
	}
	if caFile != "" {
		if o.TLSConfig == nil {
			return nil, fmt.Errorf("redis %q: a CA file needs a rediss:// URL", redacted(addr))
		}
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("redis CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("redis CA %s holds no certificate", caFile)
		}
		o.TLSConfig.RootCAs = pool
		o.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return o, nil
}

// Redacted is addr without a password, for logs and errors.
func Redacted(addr string) string { return redacted(addr) }

func redacted(addr string) string {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return addr
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "***@" + rest[at+1:]
	}
	return scheme + "://" + rest
}
