package redisconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Sentinel URL schemes: the primary is found through Redis Sentinel, and
// found again after a failover.
const (
	SchemeSentinel    = "redis-sentinel"
	SchemeSentinelTLS = "rediss-sentinel"
)

// Client returns a client for addr, which is one of
//
//	host:port                                  a server on a trusted network
//	redis://[user:password@]host:port[/db]     the same as a URL
//	rediss://[user:password@]host:port[/db]    over TLS
//	redis-sentinel://[user:password@]host:port,host:port,.../MASTER[/db]
//	rediss-sentinel://...                      the same, TLS to sentinels and servers
//
// With Sentinel the client asks the sentinels which server is the primary
// of MASTER, follows it through failovers, and reconnects its
// subscriptions to the new one; the credentials are the servers' (the
// sentinels are reached without a password). caFile (optional) is the PEM
// CA a TLS server's certificate must chain to. Close the client when done.
func Client(addr, caFile string) (redis.UniversalClient, error) {
	scheme, _, _ := strings.Cut(addr, "://")
	if scheme != SchemeSentinel && scheme != SchemeSentinelTLS {
		o, err := Options(addr, caFile)
		if err != nil {
			return nil, err
		}
		return redis.NewClient(o), nil
	}
	fo, err := failoverOptions(addr)
	if err != nil {
		return nil, err
	}
	if caFile != "" {
		if fo.TLSConfig == nil {
			return nil, fmt.Errorf("redis %q: a CA file needs TLS (%s://)", Redacted(addr), SchemeSentinelTLS)
		}
		if fo.TLSConfig.RootCAs, err = loadCA(caFile); err != nil {
			return nil, err
		}
	}
	return redis.NewFailoverClient(fo), nil
}

// failoverOptions parses a redis-sentinel:// or rediss-sentinel:// URL.
func failoverOptions(addr string) (*redis.FailoverOptions, error) {
	bad := func(why string) error {
		return fmt.Errorf("redis %q: %s (want %s://[user:password@]host:port,host:port/MASTER[/db])", Redacted(addr), why, SchemeSentinel)
	}
	// url.Parse refuses a host list, so the hosts are cut out first.
	scheme, rest, _ := strings.Cut(addr, "://")
	hosts, path, _ := strings.Cut(rest, "/")
	var user *url.Userinfo
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		u, err := url.Parse("redis://" + hosts[:at+1] + "x")
		if err != nil || u.User == nil {
			return nil, bad("unreadable credentials")
		}
		user, hosts = u.User, hosts[at+1:]
	}
	fo := &redis.FailoverOptions{}
	for _, h := range strings.Split(hosts, ",") {
		if _, port, err := net.SplitHostPort(h); err != nil || port == "" {
			return nil, bad(fmt.Sprintf("sentinel %q is not host:port", h))
		}
		fo.SentinelAddrs = append(fo.SentinelAddrs, h)
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return nil, bad("no master name")
	}
	fo.MasterName = parts[0]
	if len(parts) == 2 {
		db, err := strconv.Atoi(parts[1])
		if err != nil || db < 0 {
			return nil, bad(fmt.Sprintf("database %q", parts[1]))
		}
		fo.DB = db
	}
	if user != nil {
		fo.Username = user.Username()
		fo.Password, _ = user.Password()
	}
	if scheme == SchemeSentinelTLS {
		fo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return fo, nil
}

// Options parses a host:port or redis:// / rediss:// addr; caFile
// (optional) is the PEM CA a rediss:// server's certificate must chain to.
func Options(addr, caFile string) (*redis.Options, error) {
	if !strings.Contains(addr, "://") {
		if caFile != "" {
			return nil, fmt.Errorf("redis %q: a CA file needs a rediss:// URL", addr)
		}
		return &redis.Options{Addr: addr}, nil
	}
	o, err := redis.ParseURL(addr)
	if err != nil {
		return nil, fmt.Errorf("redis URL %q: %w", redacted(addr), err)
	}
	if caFile != "" {
		if o.TLSConfig == nil {
			return nil, fmt.Errorf("redis %q: a CA file needs a rediss:// URL", redacted(addr))
		}
		if o.TLSConfig.RootCAs, err = loadCA(caFile); err != nil {
			return nil, err
		}
		o.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return o, nil
}

func loadCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("redis CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("redis CA " + file + " holds no certificate")
	}
	return pool, nil
}

// Redacted is addr without a password, for logs and errors.
func Redacted(addr string) string { return redacted(addr) }

func redacted(addr string) string {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return addr
	}
	hosts, path, hasPath := strings.Cut(rest, "/")
	if at := strings.LastIndex(hosts, "@"); at >= 0 {
		hosts = "***@" + hosts[at+1:]
	}
	if hasPath {
		hosts += "/" + path
	}
	return scheme + "://" + hosts
}
