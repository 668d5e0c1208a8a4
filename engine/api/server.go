package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/codestore"
	"github.com/ember-run/ember/engine/dashboard"
	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/tenants"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Invoker runs a function synchronously. A function failure (error,
// timeout, crash) is reported in Result.Status with a nil error; an error
// means Ember could not run it and SHOULD wrap registry.ErrNotFound (no such
// function or version), registry.ErrInvalid, registry.ErrUnavailable or
// registry.ErrResourceExhausted so the API can answer 404/400/503. Invoke
// MUST return when ctx is done.
type Invoker interface {
	Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error)
}

// Record is one record to produce.
type Record struct {
	Key, Value []byte
	Headers    map[string]string
}

// Producer writes records to a Kafka topic. Produce returns once every
// record is acknowledged, or an error if any was not. It MUST return when
// ctx is done.
type Producer interface {
	Produce(ctx context.Context, topic string, recs []Record) error
}

// TopicAdmin creates and deletes Kafka topics. Both MUST return when ctx is
// done. CreateTopic of a topic that already exists is success; so is
// DeleteTopic of a missing one.
type TopicAdmin interface {
	CreateTopic(ctx context.Context, name string, partitions int) error
	DeleteTopic(ctx context.Context, name string) error
}

// TenantStore authenticates API keys and manages tenants; *tenants.Store
// implements it.
type TenantStore interface {
	Authenticate(ctx context.Context, key string) (tenants.Principal, error)
	Create(ctx context.Context, name string) (tenants.Tenant, string, error)
	List(ctx context.Context) ([]tenants.Tenant, error)
	Rotate(ctx context.Context, name string) (string, error)
	Revoke(ctx context.Context, name string) error
}

var _ TenantStore = (*tenants.Store)(nil)

// LagReader reports consumer lag. Lag reads a binding's offsets now (it
// MUST return when ctx is done; a binding that never ran may have no
// partitions) with the lag monitor's verdict; History returns the samples
// the monitor kept since a time, false when it watches no such binding.
type LagReader interface {
	Lag(ctx context.Context, b registry.Binding) (wire.Lag, error)
	History(bindingKey string, since time.Time) (wire.LagHistory, bool)
}

// Pool is the pool state the API reads for /v1/status and updates when a
// function is deleted; *pool.Store implements it.
type Pool interface {
	Agents(ctx context.Context) ([]pool.Agent, error)
	Occupancy(ctx context.Context) ([]pool.Occupancy, error)
	SubPools(ctx context.Context) ([]pool.SubPool, error)
	StateResources(ctx context.Context) ([]pool.StateResource, error)
	PutSubPool(ctx context.Context, p pool.SubPool) (pool.SubPool, error)
	DeleteSubPool(ctx context.Context, name string) (bool, error)
	// RetireFunction drops the function's versions from the hot sets and
	// tells agents to stop its containers.
	RetireFunction(ctx context.Context, tenant, function string, versionKeys []string) error
}

var _ Pool = (*pool.Store)(nil)

// Redriver feeds a binding's dead-lettered records back to its function.
type Redriver interface {
	// Redrive invokes b's function with b's dead-lettered records written
	// in [from, to), at least once each, and returns when they are all
	// handled (or failed again and were dead-lettered anew).
	Redrive(ctx context.Context, b registry.Binding, from, to time.Time) (wire.RedriveResult, error)
	// DeadLetters returns up to limit of b's latest dead-lettered records,
	// newest first.
	DeadLetters(ctx context.Context, b registry.Binding, limit int) ([]wire.DeadLetter, error)
}

// UsageReader sums the usage of a tenant's functions ("": every tenant's).
type UsageReader interface {
	Usage(tenant string) []wire.FunctionUsage
}

// ActivityReader reads what the consumers did for a binding.
type ActivityReader interface {
	// Activity returns a binding's summary; ok is false if it never invoked.
	Activity(bindingID string) (a wire.Activity, ok bool)
}

// Limits of request bodies.
const (
	DefaultMaxPayloadBytes = 6 << 20
	maxConfigBytes         = 64 << 10
	maxProduceRecords      = 10000
	maxLogTailHeader       = 4 << 10
	// DefaultPartitions is the partition count of a topic created without one.
	DefaultPartitions = 4
	maxPartitions     = 1000
)

// Config configures a Server.
type Config struct {
	// MetricsToken, when set, is accepted as "Authorization: Bearer
	// <token>" on /metrics besides the administrator key, so that a
	// Prometheus server need not hold the administrator key. Default: ""
	// (the administrator key only).
	MetricsToken string
	// Metrics receives the API's collectors and is served at /metrics.
	// Default: a new registry of its own.
	Metrics *prometheus.Registry
	// MaxPayloadBytes bounds invoke and produce bodies. Default: 6 MiB.
	MaxPayloadBytes int64
	// MaxAsyncPayloadBytes bounds asynchronous invoke bodies. Default:
	// 256 KiB (Lambda's limit for Event invocations).
	MaxAsyncPayloadBytes int64
	// GatewayURL is where clients reach tenants' routes (shown with each
	// route); "" when the gateway is off.
	GatewayURL string
	// Logger is the component logger. Default: disabled.
	Logger *zerolog.Logger
	// Unavailable lists further error classes (matched with errors.Is)
	// that mean Ember cannot serve the request now, answered 503 like
	// registry.ErrUnavailable; e.g. the scheduler's ErrUnavailable,
	// ErrResourceExhausted and ErrNoCapacity. Unclassified invoke errors
	// are 502. Default: none.
	Unavailable []error
}

// Validate checks c.
func (c Config) Validate() error {
	if c.MaxPayloadBytes < 0 {
		return errors.New("api: MaxPayloadBytes must not be negative")
	}
	if strings.ContainsAny(c.MetricsToken, " \t\r\n") {
		return errors.New("api: MetricsToken must not contain whitespace")
	}
	if c.MetricsToken != "" && len(c.MetricsToken) < 16 {
		return errors.New("api: MetricsToken must be at least 16 characters")
	}
	return nil
}

// Deps are the engine parts the server uses. Tenants, Registry and Code are
// required; a nil Invoker, Producer, Topics, Pool or Lag makes the routes
// that need it answer 503 (or, for status, leave that section empty).
type Deps struct {
	Tenants  TenantStore
	Registry *registry.Registry
	Code     *codestore.Store
	Topics   TopicAdmin
	Invoker  Invoker
	Producer Producer
	Pool     Pool
	// Waiting, when set, counts this emberd's invocations waiting for an
	// instance of a class (shown in status).
	Waiting func(class string) int
	// WaitTimes, when set, gives how many of this emberd's latest
	// invocations of a class waited for an instance, and the p50 and p99.
	WaitTimes func(class string) (n int, p50, p99 time.Duration)
	Lag       LagReader
	Activity  ActivityReader
	Usage     UsageReader
	Async     Async
	// Redriver, when set, serves POST /v1/bindings/{id}/redrive.
	Redriver Redriver
	// Replicas, when set, shares packages with the other emberd replicas.
	Replicas CodeReplicas
	// Preloader, when set, loads a deployed or published version on the
	// idle instances that ran the one it replaces (*scheduler.Scheduler).
	Preloader Preloader
	// Profiles, when set, reads task profiles for /v1/status.
	Profiles ProfileReader
}

// ProfileReader reads a tenant's task profiles ("": every tenant's).
type ProfileReader interface {
	Profiles(ctx context.Context, tenant string) ([]wire.TaskProfile, error)
}

// Preloader loads a version, without running it, on the idle instances
// where version from is hot; it returns on how many.
type Preloader interface {
	Preload(ctx context.Context, tenant, function, qualifier, from string) (int, error)
}

// preloadTimeout bounds the pre-load a deploy or publish waits for.
const preloadTimeout = 10 * time.Second

// CodeReplicas makes packages reachable from every emberd replica;
// *codepeers.Peers implements it.
type CodeReplicas interface {
	// Announce records that this replica holds digest (after a deploy).
	Announce(ctx context.Context, digest string) error
	// Ensure fetches digest from another replica if this one lacks it.
	Ensure(ctx context.Context, digest string) error
}

// Server is the API's HTTP handler.
type Server struct {
	cfg      Config
	deps     Deps
	log      zerolog.Logger
	handler  http.Handler
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New builds a Server.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Tenants == nil || deps.Registry == nil || deps.Code == nil {
		return nil, errors.New("api: Tenants, Registry and Code are required")
	}
	if cfg.MaxAsyncPayloadBytes == 0 {
		cfg.MaxAsyncPayloadBytes = 256 << 10
	}
	if cfg.MaxPayloadBytes == 0 {
		cfg.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, deps: deps, log: zerolog.Nop()}
	if cfg.Logger != nil {
		s.log = cfg.Logger.With().Str("component", "api").Logger()
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ember_api_requests_total", Help: "HTTP API requests by route pattern and status code.",
	}, []string{"route", "code"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "ember_api_request_duration_seconds", Help: "HTTP API request latency by route pattern.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
	}, []string{"route"})
	for _, c := range []prometheus.Collector{s.requests, s.latency} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("api: registering metrics: %w", err)
		}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", s.scrape(promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{})))
	t, a, any := s.asTenant, s.asAdmin, s.asAnyone
	mux.Handle("GET /ui/", dashboard.Handler("/ui/"))
	mux.Handle("GET /ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
	mux.HandleFunc("GET /v1/whoami", any(s.whoami))
	mux.HandleFunc("POST /v1/tenants", a(s.createTenant))
	mux.HandleFunc("GET /v1/tenants", a(s.listTenants))
	mux.HandleFunc("POST /v1/tenants/{name}/keys", a(s.rotateKey))
	mux.HandleFunc("DELETE /v1/tenants/{name}/keys", a(s.revokeKeys))
	mux.HandleFunc("PUT /v1/functions/{name}", t(s.putFunction))
	mux.HandleFunc("GET /v1/functions", t(s.listFunctions))
	mux.HandleFunc("GET /v1/functions/{name}", t(s.getFunction))
	mux.HandleFunc("DELETE /v1/functions/{name}", t(s.deleteFunction))
	mux.HandleFunc("POST /v1/functions/{name}/versions", t(s.publish))
	mux.HandleFunc("POST /v1/functions/{name}/invoke", t(s.invoke))
	mux.HandleFunc("POST /v1/functions/{name}/aliases", t(s.createAlias))
	mux.HandleFunc("GET /v1/functions/{name}/aliases", t(s.listAliases))
	mux.HandleFunc("GET /v1/functions/{name}/aliases/{alias}", t(s.getAlias))
	mux.HandleFunc("PUT /v1/functions/{name}/aliases/{alias}", t(s.updateAlias))
	mux.HandleFunc("DELETE /v1/functions/{name}/aliases/{alias}", t(s.deleteAlias))
	mux.HandleFunc("PUT /v1/functions/{name}/async", t(s.putAsyncConfig))
	mux.HandleFunc("GET /v1/functions/{name}/async", t(s.getAsyncConfig))
	mux.HandleFunc("GET /v1/invocations/{id}", t(s.getInvocation))
	mux.HandleFunc("PUT /v1/bindings/{id}", t(s.putBinding))
	mux.HandleFunc("GET /v1/bindings", t(s.listBindings))
	mux.HandleFunc("GET /v1/bindings/{id}", t(s.getBinding))
	mux.HandleFunc("DELETE /v1/bindings/{id}", t(s.deleteBinding))
	mux.HandleFunc("POST /v1/bindings/{id}/rewind", t(s.rewindBinding))
	mux.HandleFunc("POST /v1/bindings/{id}/redrive", t(s.redriveBinding))
	mux.HandleFunc("GET /v1/bindings/{id}/lag", t(s.bindingLag))
	mux.HandleFunc("GET /v1/bindings/{id}/dlq", t(s.deadLetters))
	mux.HandleFunc("PUT /v1/logging/{name}", t(s.putLogService))
	mux.HandleFunc("GET /v1/logging", t(s.listLogServices))
	mux.HandleFunc("DELETE /v1/logging/{name}", t(s.deleteLogService))
	mux.HandleFunc("PUT /v1/routes", t(s.putRoute))
	mux.HandleFunc("GET /v1/routes", t(s.listRoutes))
	mux.HandleFunc("DELETE /v1/routes", t(s.deleteRoute))
	mux.HandleFunc("POST /v1/topics", t(s.createTopic))
	mux.HandleFunc("GET /v1/topics", any(s.listTopics))
	mux.HandleFunc("DELETE /v1/topics/{topic}", t(s.deleteTopic))
	mux.HandleFunc("PUT /v1/topics/{topic}/grants/{tenant}", a(s.grantTopic))
	mux.HandleFunc("DELETE /v1/topics/{topic}/grants/{tenant}", a(s.ungrantTopic))
	mux.HandleFunc("POST /v1/topics/{topic}/records", t(s.produce))
	mux.HandleFunc("GET /v1/status", any(s.status))
	mux.HandleFunc("PUT /v1/subpools/{name}", a(s.putSubPool))
	mux.HandleFunc("GET /v1/subpools", any(s.listSubPools))
	mux.HandleFunc("DELETE /v1/subpools/{name}", a(s.deleteSubPool))
	mux.HandleFunc("GET /v1/code/{digest}", any(s.code))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeErr(w, r, http.StatusNotFound, wire.ErrNotFound, "no route "+r.Method+" "+r.URL.Path)
	})
	s.handler = s.instrument(mux, mux)
	return s, nil
}

// Handler returns the http.Handler to serve.
func (s *Server) Handler() http.Handler { return s.handler }

// statusWriter records the status code.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument counts requests by the mux's route pattern, also for requests
// that auth refused before the mux ran.
func (s *Server) instrument(mux *http.ServeMux, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		route := r.Pattern // set on r by the mux (Go 1.23+)
		if route == "" {
			_, route = mux.Handler(r)
		}
		if route == "" || route == "/" {
			route = "unmatched"
		}
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		s.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
		s.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, code int, typ, msg string) {
	if code >= 500 {
		s.log.Warn().Str("method", r.Method).Str("path", r.URL.Path).Int("code", code).Str("error", msg).Msg("request failed")
	}
	writeJSON(w, code, wire.ErrorBody{Error: wire.ErrorDetail{Type: typ, Message: msg}})
}

// fail answers err with the status of its class; unclassified errors are
// 500 (Ember failed).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.failWith(w, r, err, http.StatusInternalServerError)
}

// failWith is fail with the status for unclassified errors given.
func (s *Server) failWith(w http.ResponseWriter, r *http.Request, err error, fallback int) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), errors.Is(err, codestore.ErrTooLarge):
		s.writeErr(w, r, http.StatusRequestEntityTooLarge, wire.ErrTooLarge, err.Error())
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, codestore.ErrNotFound):
		s.writeErr(w, r, http.StatusNotFound, wire.ErrNotFound, err.Error())
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, codestore.ErrInvalid):
		s.writeErr(w, r, http.StatusBadRequest, wire.ErrInvalid, err.Error())
	case errors.Is(err, tenants.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="ember"`)
		s.writeErr(w, r, http.StatusUnauthorized, wire.ErrUnauthorized, err.Error())
	case errors.Is(err, errForbidden):
		s.writeErr(w, r, http.StatusForbidden, wire.ErrForbidden, err.Error())
	case errors.Is(err, registry.ErrConflict):
		s.writeErr(w, r, http.StatusConflict, wire.ErrConflict, err.Error())
	case errors.Is(err, registry.ErrUnavailable), errors.Is(err, registry.ErrResourceExhausted), s.isUnavailable(err):
		s.writeErr(w, r, http.StatusServiceUnavailable, wire.ErrUnavailable, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		s.writeErr(w, r, http.StatusGatewayTimeout, wire.ErrUnavailable, err.Error())
	default:
		s.writeErr(w, r, fallback, wire.ErrInternal, err.Error())
	}
}

func (s *Server) isUnavailable(err error) bool {
	for _, u := range s.cfg.Unavailable {
		if errors.Is(err, u) {
			return true
		}
	}
	return false
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), registry.ErrInvalid)
}
