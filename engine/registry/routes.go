package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Route limits.
const (
	// DefaultRouteMaxBody is a route's request body limit unless it sets
	// one (Lambda's synchronous payload limit).
	DefaultRouteMaxBody = 6 << 20
	// MaxRouteMaxBody is the largest body limit a route may set.
	MaxRouteMaxBody = 10 << 20
	// MaxRoutesPerTenant bounds a tenant's route table.
	MaxRoutesPerTenant = 300
)

// Route maps HTTP requests to a function: a method and a path template,
// as an API Gateway HTTP API route ("GET /orders/{id}").
type Route struct {
	Tenant string
	// Method is GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY.
	Method string
	// Path is a template: literal segments and {name} parameters; the last
	// segment may be a greedy {name+} that takes the rest of the path.
	Path      string
	Function  string
	Qualifier string // "" ($LATEST), a published version or an alias
	// Public routes take requests without an API key; others need the
	// tenant's key (Authorization: Bearer).
	Public bool
	// CORS, when set, answers preflight requests and adds the CORS headers.
	CORS *CORS `json:",omitempty"`
	// MaxBodyBytes bounds the request body (413 beyond). Default:
	// DefaultRouteMaxBody.
	MaxBodyBytes int64
	// Timeout bounds the whole request (504 beyond); 0: the function's
	// timeout.
	Timeout time.Duration
	// Mapping, when set, replaces the payload format 2.0 event and the
	// response mapping (package gateway documents the templates).
	Mapping *Mapping `json:",omitempty"`
	Created time.Time
}

// CORS is a route's cross-origin policy.
type CORS struct {
	AllowOrigins     []string `json:",omitempty"` // "*" or origins
	AllowMethods     []string `json:",omitempty"` // default: the route's method
	AllowHeaders     []string `json:",omitempty"`
	ExposeHeaders    []string `json:",omitempty"`
	MaxAgeSeconds    int      `json:",omitempty"`
	AllowCredentials bool     `json:",omitempty"`
}

// Mapping is a custom mapping definition: Request is a JSON template of the
// payload sent to the function; Response says how its result becomes the
// HTTP response.
type Mapping struct {
	Request  json.RawMessage  `json:",omitempty"`
	Response *ResponseMapping `json:",omitempty"`
}

// ResponseMapping shapes the HTTP response from a function's result.
type ResponseMapping struct {
	StatusCode int               `json:",omitempty"` // default 200
	Headers    map[string]string `json:",omitempty"`
	// Body is a JSON template over the result; default: the result itself.
	Body json.RawMessage `json:",omitempty"`
}

// Key is the route's key within its tenant: "METHOD PATH".
func (r Route) Key() string { return r.Method + " " + r.Path }

var (
	routeMethods   = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"}
	literalSegRE   = regexp.MustCompile(`^[A-Za-z0-9._~!$&'()*,;=:@-]+$`)
	paramSegRE     = regexp.MustCompile(`^\{([A-Za-z_][A-Za-z0-9_]*)(\+?)\}$`)
	errRouteTooBig = errors.New("too many routes")
)

// Pattern returns the route as a net/http ServeMux pattern: "GET
// /orders/{id}", a greedy {rest+} as {rest...}, ANY without a method.
func (r Route) Pattern() string {
	p := r.Path
	if strings.HasSuffix(p, "+}") {
		p = strings.TrimSuffix(p, "+}") + "...}"
	}
	if r.Method == "ANY" {
		return p
	}
	return r.Method + " " + p
}

// ValidateRoute checks a route's method, path template, body limit and
// timeout; CORS and the mapping templates are checked by their users.
func ValidateRoute(r Route) error {
	if !slicesContains(routeMethods, r.Method) {
		return fmt.Errorf("route method %q: want one of %s: %w", r.Method, strings.Join(routeMethods, ", "), ErrInvalid)
	}
	if !strings.HasPrefix(r.Path, "/") || len(r.Path) > 512 {
		return fmt.Errorf("route path %q: want an absolute path of at most 512 characters: %w", r.Path, ErrInvalid)
	}
	segs := strings.Split(r.Path[1:], "/")
	names := map[string]bool{}
	for i, seg := range segs {
		if seg == "" && len(segs) == 1 {
			break // "/"
		}
		if m := paramSegRE.FindStringSubmatch(seg); m != nil {
			if names[m[1]] {
				return fmt.Errorf("route path %q: parameter {%s} twice: %w", r.Path, m[1], ErrInvalid)
			}
			names[m[1]] = true
			if m[2] == "+" && i != len(segs)-1 {
				return fmt.Errorf("route path %q: a greedy {%s+} must be the last segment: %w", r.Path, m[1], ErrInvalid)
			}
			continue
		}
		if !literalSegRE.MatchString(seg) {
			return fmt.Errorf("route path %q: segment %q is neither a literal nor a {parameter}: %w", r.Path, seg, ErrInvalid)
		}
	}
	if r.MaxBodyBytes < 0 || r.MaxBodyBytes > MaxRouteMaxBody {
		return fmt.Errorf("route max body %d bytes: want 0 (default %d) to %d: %w", r.MaxBodyBytes, DefaultRouteMaxBody, MaxRouteMaxBody, ErrInvalid)
	}
	if r.Timeout < 0 || r.Timeout > MaxTimeout {
		return fmt.Errorf("route timeout %v: want 0 (the function's) to %v: %w", r.Timeout, MaxTimeout, ErrInvalid)
	}
	return nil
}

// conflicts reports whether the route table with add can serve every
// request unambiguously (net/http's rules: two patterns that match the same
// requests with neither more specific conflict).
func conflicts(routes []Route) (err error) {
	mux := http.NewServeMux()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("route conflicts with another: %v: %w", p, ErrConflict)
		}
	}()
	for _, r := range routes {
		mux.HandleFunc(r.Pattern(), func(http.ResponseWriter, *http.Request) {})
	}
	return nil
}

func (r *Registry) routesKey(tenant string) string { return r.prefix + "routes:" + tenant }

// PutRoute creates or replaces tenant's route r.Key(). The function must
// exist (and the version, for a numeric qualifier); a route that would
// match the same requests as another is ErrConflict.
func (r *Registry) PutRoute(ctx context.Context, rt Route) (Route, error) {
	for _, n := range [][2]string{{"tenant", rt.Tenant}, {"function", rt.Function}} {
		if err := ValidName(n[0], n[1]); err != nil {
			return Route{}, err
		}
	}
	if rt.Qualifier == Latest {
		rt.Qualifier = ""
	}
	if err := ValidateRoute(rt); err != nil {
		return Route{}, err
	}
	key := r.routesKey(rt.Tenant)
	fkey := r.fnKey(rt.Tenant, rt.Function)
	err := r.tx(ctx, "put route", func(tx *redis.Tx) error {
		f, err := getFunction(ctx, tx, fkey)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("route %s: function %q not found: %w", rt.Key(), rt.Function, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if err := checkQualifier(ctx, tx, fkey, f, rt.Qualifier); err != nil {
			return fmt.Errorf("route %s: %w", rt.Key(), err)
		}
		all, err := routesOf(ctx, tx, key)
		if err != nil {
			return err
		}
		others := make([]Route, 0, len(all)+1)
		for _, o := range all {
			if o.Key() == rt.Key() {
				rt.Created = o.Created
				continue
			}
			others = append(others, o)
		}
		if len(others) >= MaxRoutesPerTenant {
			return fmt.Errorf("tenant %q has %d routes: %w: %w", rt.Tenant, len(others), errRouteTooBig, ErrInvalid)
		}
		if err := conflicts(append(others, rt)); err != nil {
			return fmt.Errorf("route %s: %w", rt.Key(), err)
		}
		if rt.Created.IsZero() {
			rt.Created = time.Now().UTC()
		}
		b, err := json.Marshal(rt)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, rt.Key(), b)
			p.Publish(ctx, r.ChangesChannel(), "route "+rt.Tenant)
			return nil
		})
		return err
	}, key, fkey)
	if err != nil {
		return Route{}, err
	}
	return rt, nil
}

// DeleteRoute removes tenant's route "METHOD PATH"; a missing route is
// ErrNotFound.
func (r *Registry) DeleteRoute(ctx context.Context, tenant, method, path string) error {
	key := Route{Method: method, Path: path}.Key()
	var del *redis.IntCmd
	_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.HDel(ctx, r.routesKey(tenant), key)
		p.Publish(ctx, r.ChangesChannel(), "route "+tenant)
		return nil
	})
	if err != nil {
		return unavailable("delete route", err)
	}
	if del.Val() == 0 {
		return fmt.Errorf("route %s: %w", key, ErrNotFound)
	}
	return nil
}

// ListRoutes returns tenant's routes sorted by path and method.
func (r *Registry) ListRoutes(ctx context.Context, tenant string) ([]Route, error) {
	out, err := routesOf(ctx, r.rdb, r.routesKey(tenant))
	if err != nil {
		return nil, r.classify("list routes", err)
	}
	return out, nil
}

func routesOf(ctx context.Context, c redis.Cmdable, key string) ([]Route, error) {
	m, err := c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Route, 0, len(m))
	for k, s := range m {
		var rt Route
		if err := json.Unmarshal([]byte(s), &rt); err != nil {
			return nil, fmt.Errorf("registry: corrupt route %q: %w", k, err)
		}
		out = append(out, rt)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Path != out[j].Path {
			return out[i].Path < out[j].Path
		}
		return out[i].Method < out[j].Method
	})
	return out, nil
}

// RouteTable returns tenant's routes for serving, with a version that
// changes whenever the table may have: callers may keep what they built
// from the same version. It costs no Redis round trip while the cache is
// live (Run) and the table was read within the cache TTL.
func (r *Registry) RouteTable(ctx context.Context, tenant string) ([]Route, uint64, error) {
	r.mu.Lock()
	gen, useCache := r.gen, r.live && r.cacheTTL >= 0
	if e, ok := r.routes[tenant]; ok && useCache && r.now().Sub(e.at) < r.cacheTTL {
		r.mu.Unlock()
		return e.routes, e.version, nil
	}
	r.mu.Unlock()
	routes, err := r.ListRoutes(ctx, tenant)
	if err != nil {
		return nil, 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fills++
	if useCache && r.live && r.gen == gen && len(routes) > 0 { // no invalidation raced this read; no entry per unknown tenant
		r.routes[tenant] = routeEntry{routes: routes, version: r.fills, at: r.now()}
	}
	return routes, r.fills, nil
}
