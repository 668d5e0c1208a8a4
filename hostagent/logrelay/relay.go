package logrelay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ember-run/ember/hostagent/network"
)

// blockedV6 are the IPv6 ranges never dialled unless allowed.
var blockedV6 = []string{"::1/128", "::/128", "fe80::/10", "fc00::/7", "ff00::/8", "::ffff:0:0/96"}

// Policy decides which addresses a relay may dial.
type Policy struct {
	// Allow are prefixes otherwise blocked that may be dialled (a logging
	// service on a private network, or a local one in tests).
	Allow []netip.Prefix
}

// Permits reports whether a may be dialled.
func (p Policy) Permits(a netip.Addr) bool {
	a = a.Unmap()
	for _, pr := range p.Allow {
		if pr.Contains(a) {
			return true
		}
	}
	blocked := network.Blocked
	if a.Is6() {
		blocked = blockedV6
	}
	for _, b := range blocked {
		if netip.MustParsePrefix(b).Contains(a) {
			return false
		}
	}
	return true
}

// Limits of one relay.
const (
	maxTargets   = 4 // services registered at once (the current one and those still flushing)
	maxConns     = 4
	firstLineMax = 256
	dialTimeout  = 5 * time.Second
)

// Relay serves one instance's relay socket.
type Relay struct {
	ln     *net.UnixListener
	policy Policy
	log    zerolog.Logger

	mu      sync.Mutex
	targets []target // most recent last
	conns   map[net.Conn]bool
	closed  bool
	wg      sync.WaitGroup
}

type target struct{ id, addr string }

// Listen creates the socket at path, owned by uid with mode 0600, and
// serves it until Close.
func Listen(path string, uid int, policy Policy, log zerolog.Logger) (*Relay, error) {
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("logrelay: listen: %w", err)
	}
	if err := os.Chmod(path, 0o600); err == nil {
		err = os.Chown(path, uid, uid)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("logrelay: socket owner: %w", err)
	}
	r := &Relay{ln: ln, policy: policy, log: log, conns: map[net.Conn]bool{}}
	r.wg.Go(r.serve)
	return r, nil
}

// Allow registers a logging service: connections naming id go to its
// endpoint's host and port (the scheme's default port if none).
func (r *Relay) Allow(id, endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return fmt.Errorf("logrelay: endpoint %q: not a URL with a host", endpoint)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if port == "" {
		return fmt.Errorf("logrelay: endpoint %q: unknown scheme", endpoint)
	}
	addr := net.JoinHostPort(u.Hostname(), port)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range r.targets {
		if t.id == id {
			r.targets = append(r.targets[:i], r.targets[i+1:]...)
			break
		}
	}
	r.targets = append(r.targets, target{id, addr})
	if len(r.targets) > maxTargets {
		r.targets = r.targets[1:]
	}
	return nil
}

func (r *Relay) lookup(id string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.targets {
		if t.id == id {
			return t.addr, true
		}
	}
	return "", false
}

// Close stops the relay and cuts its connections.
func (r *Relay) Close() error {
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	err := r.ln.Close()
	r.wg.Wait()
	return err
}

func (r *Relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.closed || len(r.conns) >= maxConns {
			r.mu.Unlock()
			c.Close()
			continue
		}
		r.conns[c] = true
		r.mu.Unlock()
		r.wg.Go(func() {
			defer func() {
				r.mu.Lock()
				delete(r.conns, c)
				r.mu.Unlock()
				c.Close()
			}()
			if err := r.relay(c); err != nil {
				r.log.Warn().Err(err).Msg("log relay connection refused")
			}
		})
	}
}

var errRefused = errors.New("destination refused by the relay's policy")

// relay reads the connection's first line, dials its service and copies.
func (r *Relay) relay(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(dialTimeout))
	br := bufio.NewReaderSize(c, firstLineMax)
	line, err := br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("first line: %w", err)
	}
	id := string(line[:len(line)-1])
	addr, ok := r.lookup(id)
	if !ok {
		return fmt.Errorf("unknown logging service %q", id)
	}
	_ = c.SetReadDeadline(time.Time{})
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", host, err)
	}
	var up net.Conn
	for _, ip := range ips {
		if !r.policy.Permits(ip) {
			err = fmt.Errorf("%s (%s): %w", host, ip, errRefused)
			continue
		}
		var d net.Dialer
		if up, err = d.DialContext(ctx, "tcp", net.JoinHostPort(ip.Unmap().String(), port)); err == nil {
			break
		}
	}
	if up == nil {
		return err
	}
	defer up.Close()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.conns[up] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.conns, up)
		r.mu.Unlock()
	}()
	done := make(chan struct{}, 2)
	go func() { // service -> ember-init
		_, _ = io.Copy(c, up)
		if uc, ok := c.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
		done <- struct{}{}
	}()
	_, _ = io.Copy(up, br) // ember-init -> service, starting with what br buffered
	if tc, ok := up.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	<-done
	return nil
}
