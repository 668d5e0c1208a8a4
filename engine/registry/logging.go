package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// LogService is a tenant's logging service: an OTLP/HTTP logs endpoint
// and the credentials it accepts. The tenant's functions' output lines and
// REPORT records go there, from instances configured for it (see the
// scheduler's claim order and hostagent's relay).
type LogService struct {
	Tenant, Name string
	// Endpoint is the http or https URL records are POSTed to; a URL
	// without a path gets /v1/logs.
	Endpoint string
	// Authorization is the Authorization header's value ("Bearer ...",
	// "Basic ..."): the credentials. Kept in Redis for dispatches; never
	// returned by the API or logged.
	Authorization string `json:",omitempty"`
	// Default makes it the service of the tenant's functions that name none.
	Default bool
	// Revision counts its changes: instances configured for an older
	// revision are configured again.
	Revision int64
	Created  time.Time
	Updated  time.Time
}

// ID names the service at its revision (what instances are configured for).
func (s LogService) ID() string { return s.Name + "#" + strconv.FormatInt(s.Revision, 10) }

// LogServiceNone, as a function's or invocation's logging service, turns a
// tenant's default off.
const LogServiceNone = "none"

// maxAuthorization bounds the credentials' size.
const maxAuthorization = 4096

// NormalizeEndpoint checks an OTLP/HTTP logs URL and gives it the default
// path.
func NormalizeEndpoint(e string) (string, error) {
	u, err := url.Parse(e)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("logging endpoint %q: want http(s)://host[:port][/path] without credentials, query or fragment: %w", e, ErrInvalid)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/logs"
	}
	return u.String(), nil
}

func (r *Registry) logSvcKey(tenant string) string { return r.prefix + "logsvc:" + tenant }

// PutLogService creates or replaces tenant's logging service s.Name,
// bumping its revision. Making it the default takes that from the others.
func (r *Registry) PutLogService(ctx context.Context, s LogService) (LogService, error) {
	if err := ValidName("tenant", s.Tenant); err != nil {
		return LogService{}, err
	}
	if err := ValidName("logging service", s.Name); err != nil {
		return LogService{}, err
	}
	if s.Name == LogServiceNone {
		return LogService{}, fmt.Errorf("logging service name %q is reserved: %w", s.Name, ErrInvalid)
	}
	ep, err := NormalizeEndpoint(s.Endpoint)
	if err != nil {
		return LogService{}, err
	}
	s.Endpoint = ep
	if len(s.Authorization) > maxAuthorization || strings.ContainsAny(s.Authorization, "\r\n\x00") {
		return LogService{}, fmt.Errorf("logging service %q: credentials over %d bytes or with line breaks: %w", s.Name, maxAuthorization, ErrInvalid)
	}
	key := r.logSvcKey(s.Tenant)
	err = r.tx(ctx, "put logging service", func(tx *redis.Tx) error {
		all, err := logServicesOf(ctx, tx, key)
		if err != nil {
			return err
		}
		now := time.Now().UTC()
		s.Created, s.Updated, s.Revision = now, now, 1
		var demote []LogService
		for _, o := range all {
			if o.Name == s.Name {
				s.Created, s.Revision = o.Created, o.Revision+1
			} else if s.Default && o.Default {
				o.Default = false
				demote = append(demote, o)
			}
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, o := range append(demote, s) {
				b, err := json.Marshal(o)
				if err != nil {
					return err
				}
				p.HSet(ctx, key, o.Name, b)
			}
			p.Publish(ctx, r.ChangesChannel(), "logsvc "+s.Tenant)
			return nil
		})
		return err
	}, key)
	if err != nil {
		return LogService{}, r.classify("put logging service", err)
	}
	return s, nil
}

// DeleteLogService removes tenant's logging service; one a function names
// is ErrConflict, a missing one ErrNotFound.
func (r *Registry) DeleteLogService(ctx context.Context, tenant, name string) error {
	fns, err := r.ListFunctions(ctx, tenant)
	if err != nil {
		return err
	}
	for _, f := range fns {
		if f.LogService == name {
			return fmt.Errorf("logging service %q is used by function %q: %w", name, f.Name, ErrConflict)
		}
	}
	var del *redis.IntCmd
	_, err = r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.HDel(ctx, r.logSvcKey(tenant), name)
		p.Publish(ctx, r.ChangesChannel(), "logsvc "+tenant)
		return nil
	})
	if err != nil {
		return unavailable("delete logging service", err)
	}
	if del.Val() == 0 {
		return fmt.Errorf("logging service %q: %w", name, ErrNotFound)
	}
	return nil
}

// ListLogServices returns tenant's logging services by name, credentials
// included: callers showing them must strip Authorization.
func (r *Registry) ListLogServices(ctx context.Context, tenant string) ([]LogService, error) {
	out, err := logServicesOf(ctx, r.rdb, r.logSvcKey(tenant))
	if err != nil {
		return nil, r.classify("list logging services", err)
	}
	return out, nil
}

func logServicesOf(ctx context.Context, c redis.Cmdable, key string) ([]LogService, error) {
	m, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	out := make([]LogService, 0, len(m))
	for k, v := range m {
		var s LogService
		if err := json.Unmarshal([]byte(v), &s); err != nil {
			return nil, fmt.Errorf("registry: corrupt logging service %q: %w", k, err)
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ResolveLogService returns the logging service an invocation uses: name
// (the invocation's, else its function's), else the tenant's default.
// ok is false when there is none (or name is LogServiceNone); a name that
// does not exist is ErrNotFound. No Redis round trip while the cache is
// live and the tenant's services were read within the cache TTL.
func (r *Registry) ResolveLogService(ctx context.Context, tenant, name string) (s LogService, ok bool, err error) {
	if name == LogServiceNone {
		return LogService{}, false, nil
	}
	all, err := r.cachedLogServices(ctx, tenant)
	if err != nil {
		return LogService{}, false, err
	}
	for _, s := range all {
		if (name == "" && s.Default) || (name != "" && s.Name == name) {
			return s, true, nil
		}
	}
	if name != "" {
		return LogService{}, false, fmt.Errorf("logging service %q: %w", name, ErrNotFound)
	}
	return LogService{}, false, nil
}

func (r *Registry) cachedLogServices(ctx context.Context, tenant string) ([]LogService, error) {
	r.mu.Lock()
	gen, useCache := r.gen, r.live && r.cacheTTL >= 0
	if e, ok := r.logsvcs[tenant]; ok && useCache && r.now().Sub(e.at) < r.cacheTTL {
		r.mu.Unlock()
		return e.services, nil
	}
	r.mu.Unlock()
	all, err := r.ListLogServices(ctx, tenant)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if useCache && r.live && r.gen == gen { // no invalidation raced this read
		r.logsvcs[tenant] = logSvcEntry{services: all, at: r.now()}
	}
	return all, nil
}

type logSvcEntry struct {
	services []LogService
	at       time.Time
}

// checkLogService: a function's logging service must exist when set.
func (r *Registry) checkLogService(ctx context.Context, tenant, name string) error {
	if name == "" || name == LogServiceNone {
		return nil
	}
	if _, _, err := r.ResolveLogService(ctx, tenant, name); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("function's %w", err)
		}
		return err
	}
	return nil
}
