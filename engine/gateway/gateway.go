package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/tenants"
)

// Invoker runs an invocation on the warm path (the scheduler).
type Invoker interface {
	Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error)
}

// Routes gives a tenant's route table and its version (registry.RouteTable).
type Routes interface {
	RouteTable(ctx context.Context, tenant string) ([]registry.Route, uint64, error)
}

// Authenticator checks API keys (tenants.Store).
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (tenants.Principal, error)
}

// Config configures a Gateway.
type Config struct {
	Log zerolog.Logger
	// Metrics, when set, receives the gateway's request counters.
	Metrics prometheus.Registerer
	// Unavailable are the Invoker's errors that mean "no capacity now":
	// answered 503 (others 500).
	Unavailable []error
}

// Gateway serves /{tenant}/{path...}. Build it with New.
type Gateway struct {
	routes Routes
	auth   Authenticator
	inv    Invoker
	cfg    Config

	mu     sync.Mutex
	tables map[string]*table

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	handler  http.Handler // serve, instrumented
}

// table is a tenant's route table ready to match.
type table struct {
	version   uint64
	mux       *http.ServeMux
	byPattern map[string]registry.Route
}

// New returns a Gateway.
func New(routes Routes, auth Authenticator, inv Invoker, cfg Config) (*Gateway, error) {
	g := &Gateway{routes: routes, auth: auth, inv: inv, cfg: cfg, tables: map[string]*table{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ember_gateway_requests_total", Help: "HTTP requests to tenants' routes, by status code.",
		}, []string{"code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ember_gateway_request_seconds", Help: "HTTP requests to tenants' routes, from the request to the response.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
		}, nil),
	}
	g.handler = promhttp.InstrumentHandlerDuration(g.duration,
		promhttp.InstrumentHandlerCounter(g.requests, http.HandlerFunc(g.serve)))
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{g.requests, g.duration} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return g, nil
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.handler.ServeHTTP(w, r)
}

// serve routes a request to the tenant's table.
func (g *Gateway) serve(sw http.ResponseWriter, r *http.Request) {
	tenant, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	_, rawRest, _ := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	if registry.ValidName("tenant", tenant) != nil {
		message(sw, http.StatusNotFound, "Not Found")
		return
	}
	t, err := g.table(r.Context(), tenant)
	if err != nil {
		g.cfg.Log.Warn().Err(err).Str("tenant", tenant).Msg("gateway: route table")
		message(sw, http.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	// Match the path after the tenant: a shallow copy, so that the
	// ServeMux sets the path parameters on it.
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = "/"+rest, "/"+rawRest
	if p := "/" + rest; path.Clean(p) != p && path.Clean(p)+"/" != p {
		message(sw, http.StatusNotFound, "Not Found") // the mux would redirect out of the tenant
		return
	}
	served := new(bool)
	r2 = r2.WithContext(context.WithValue(r.Context(), servedKey{}, served))
	t.mux.ServeHTTP(&tenantRedirects{ResponseWriter: sw, prefix: "/" + tenant, served: served}, r2)
}

type servedKey struct{}

// tenantRedirects puts the tenant back in front of the redirects the mux
// makes itself (a {rest+} route asked without its trailing slash); a
// route's own responses pass unchanged.
type tenantRedirects struct {
	http.ResponseWriter
	prefix string
	served *bool
}

func (w *tenantRedirects) WriteHeader(code int) {
	if !*w.served && code/100 == 3 {
		if loc := w.Header().Get("Location"); strings.HasPrefix(loc, "/") {
			w.Header().Set("Location", w.prefix+loc)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *tenantRedirects) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// table returns tenant's route table, rebuilt when its version changed.
func (g *Gateway) table(ctx context.Context, tenant string) (*table, error) {
	routes, version, err := g.routes.RouteTable(ctx, tenant)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if t := g.tables[tenant]; t != nil && t.version == version {
		return t, nil
	}
	t := &table{version: version, mux: http.NewServeMux(), byPattern: map[string]registry.Route{}}
	for _, rt := range routes {
		p := rt.Pattern()
		if _, dup := t.byPattern[p]; dup {
			continue
		}
		t.byPattern[p] = rt
		func() {
			defer func() {
				if p := recover(); p != nil { // PutRoute refuses conflicts; a table written around it loses the route
					g.cfg.Log.Error().Str("tenant", tenant).Str("route", rt.Key()).Msgf("gateway: route conflicts: %v", p)
				}
			}()
			params := paramNames(rt.Path)
			t.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { g.serveRoute(w, r, rt, params) })
		}()
	}
	mux := t.mux
	func() {
		defer func() { _ = recover() }() // ANY /{rest+} or ANY / is the catch-all itself
		t.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { g.unmatched(w, r, mux, t) })
	}()
	if len(routes) > 0 { // requests to tenants without routes must not grow the cache
		g.tables[tenant] = t
	}
	return t, nil
}

// unmatched answers a request no route matches: a CORS preflight for a
// route with a CORS policy, else 404.
func (g *Gateway) unmatched(w http.ResponseWriter, r *http.Request, mux *http.ServeMux, t *table) {
	if want := r.Header.Get("Access-Control-Request-Method"); r.Method == http.MethodOptions && want != "" {
		probe := r.Clone(r.Context())
		probe.Method = want
		if _, pattern := mux.Handler(probe); pattern != "" && pattern != "/" {
			if rt := t.byPattern[pattern]; rt.CORS != nil {
				preflight(w, r, rt)
				return
			}
		}
	}
	message(w, http.StatusNotFound, "Not Found")
}

// serveRoute runs rt's function for the request.
func (g *Gateway) serveRoute(w http.ResponseWriter, r *http.Request, rt registry.Route, params []string) {
	if served, ok := r.Context().Value(servedKey{}).(*bool); ok {
		*served = true
	}
	if rt.CORS != nil && r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" && rt.Method != "OPTIONS" {
		preflight(w, r, rt)
		return
	}
	if !rt.Public {
		p, err := g.auth.Authenticate(r.Context(), tenants.Bearer(r))
		if errors.Is(err, registry.ErrUnavailable) {
			message(w, http.StatusServiceUnavailable, "Service Unavailable")
			return
		}
		if err != nil || p.Tenant != rt.Tenant {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ember"`)
			message(w, http.StatusUnauthorized, "Unauthorized")
			return
		}
	}
	corsHeaders(w.Header(), rt.CORS, rt, r.Header.Get("Origin"))
	limit := rt.MaxBodyBytes
	if limit == 0 {
		limit = registry.DefaultRouteMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			message(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		} else {
			message(w, http.StatusBadRequest, "Bad Request")
		}
		return
	}
	q := &request{r: r, route: rt, rawPath: r.URL.EscapedPath(), params: make(map[string]string, len(params)), body: body,
		id: invoke.NewID(), at: time.Now()}
	for _, name := range params {
		q.params[name] = r.PathValue(name)
	}
	var payload []byte
	if rt.Mapping != nil && len(rt.Mapping.Request) > 0 {
		payload, err = q.customPayload()
	} else {
		payload, err = json.Marshal(q.event())
	}
	if err != nil {
		message(w, http.StatusInternalServerError, "Internal Server Error")
		return
	}
	// A client that disconnects once the invocation has an instance does
	// not stop it (RunToEnd: that would kill the function and destroy its
	// warm instance); the route's timeout is its deadline.
	ctx := r.Context()
	inv := &invoke.Invocation{ID: q.id, Tenant: rt.Tenant, Function: rt.Function, Qualifier: rt.Qualifier,
		Payload: payload, Source: "route " + rt.Key(), TraceID: r.Header.Get("X-Ember-Trace-Id"), RunToEnd: true}
	if rt.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.Timeout)
		defer cancel()
		inv.Deadline = q.at.Add(rt.Timeout)
	}
	w.Header().Set("X-Ember-Request-Id", q.id)
	res, err := g.inv.Invoke(ctx, inv)
	switch {
	case err != nil && ctx.Err() != nil && r.Context().Err() == nil:
		message(w, http.StatusGatewayTimeout, "Endpoint request timed out")
		return
	case err != nil && g.unavailable(err):
		message(w, http.StatusServiceUnavailable, "Service Unavailable")
		return
	case errors.Is(err, registry.ErrNotFound):
		message(w, http.StatusBadGateway, "Internal Server Error") // the route's function is gone
		return
	case err != nil:
		g.cfg.Log.Warn().Err(err).Str("tenant", rt.Tenant).Str("route", rt.Key()).Msg("gateway: invoke failed")
		message(w, http.StatusInternalServerError, "Internal Server Error")
		return
	case res.Status == invoke.StatusTimeout:
		message(w, http.StatusGatewayTimeout, "Endpoint request timed out")
		return
	case !res.OK():
		message(w, http.StatusBadGateway, "Internal Server Error")
		return
	}
	var resp httpResponse
	if rt.Mapping != nil && rt.Mapping.Response != nil {
		resp, err = customResponse(rt.Mapping.Response, res.Payload)
	} else {
		resp, err = mapResult(res.Payload)
	}
	if err != nil {
		g.cfg.Log.Info().Err(err).Str("tenant", rt.Tenant).Str("route", rt.Key()).Msg("gateway: invalid function response")
		message(w, http.StatusBadGateway, "Internal Server Error")
		return
	}
	resp.write(w)
}

func (g *Gateway) unavailable(err error) bool {
	for _, u := range g.cfg.Unavailable {
		if errors.Is(err, u) {
			return true
		}
	}
	return errors.Is(err, registry.ErrUnavailable)
}

// paramNames lists a path template's parameter names ({name}, {name+}).
func paramNames(path string) []string {
	var out []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			out = append(out, strings.TrimSuffix(strings.Trim(seg, "{}"), "+"))
		}
	}
	return out
}
