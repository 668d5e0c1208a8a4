package predict

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/scheduler"
)

// Config tunes learning and predicting. The zero value is valid.
type Config struct {
	// HalfLife: profile counts halve every HalfLife. Default: 10m.
	HalfLife time.Duration
	// MinFollows: a pair is predicted once To followed From at least this
	// often (decayed). Default: 3.
	MinFollows float64
	// MinProbability: ... and followed at least this share of From's runs.
	// Default: 0.5.
	MinProbability float64
	// MaxLoading bounds loads ahead in flight on this replica. Default: 1
	// (a load is a container start: several at once, beside the starts of
	// the functions that run, slowed them all down on 2 cores).
	MaxLoading int
	// MinHitRatio: a pair whose loads ahead were used less than this
	// share of the time, after SuspendAfter of them, is no longer predicted
	// (until its counts decay). Default: 0.25.
	MinHitRatio float64
	// SuspendAfter: see MinHitRatio. Default: 8.
	SuspendAfter float64
	// FlushEvery: what was learned reaches Redis this often. Default: 1s.
	FlushEvery time.Duration
	// RefreshEvery: a tenant's profiles are read again this often (while it
	// runs anything). Default: 2s.
	RefreshEvery time.Duration
}

func (c *Config) setDefaults() {
	if c.HalfLife <= 0 {
		c.HalfLife = 10 * time.Minute
	}
	if c.MinFollows <= 0 {
		c.MinFollows = 3
	}
	if c.MinProbability <= 0 {
		c.MinProbability = 0.5
	}
	if c.MaxLoading <= 0 {
		c.MaxLoading = 1
	}
	if c.MinHitRatio <= 0 {
		c.MinHitRatio = 0.25
	}
	if c.SuspendAfter <= 0 {
		c.SuspendAfter = 8
	}
	if c.FlushEvery <= 0 {
		c.FlushEvery = time.Second
	}
	if c.RefreshEvery <= 0 {
		c.RefreshEvery = 2 * time.Second
	}
}

// Invoker runs invocations (the scheduler, or what wraps it).
type Invoker interface {
	Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error)
}

// Loader loads a version on an instance ahead of its invocation
// (*scheduler.Scheduler).
type Loader interface {
	LoadAhead(ctx context.Context, v registry.Version, tag string) (scheduler.Ahead, error)
}

// HotCounter counts idle instances where a version runs (*pool.Store).
type HotCounter interface {
	IdleHot(ctx context.Context, versionKey string) (int64, error)
}

// Predictor is an Invoker that learns task profiles from what runs through
// it and, when a function starts that another tends to follow, loads the
// other's code ahead on an instance of the tenant. Start Run to keep
// profiles in Redis; without it nothing is learned.
type Predictor struct {
	cfg      Config
	next     Invoker
	store    *Store
	resolver scheduler.Resolver
	loader   Loader
	hot      HotCounter
	log      zerolog.Logger
	m        *metrics

	base   context.Context // loads ahead run on it; cancelled when Run ends
	cancel context.CancelFunc

	mu         sync.Mutex
	running    map[string]int // tenant/function -> invocations in flight here
	loading    map[string]int // tenant/function -> loads ahead in flight here
	loadingAll int
	pending    batch
	cache      map[string]*tenantProfiles
}

// tenantProfiles is a tenant's profiles as last read, by From.
type tenantProfiles struct {
	at         time.Time // last read
	used       time.Time // last invocation of the tenant here
	from       map[string][]Profile
	refreshing bool
}

// Option configures a Predictor.
type Option func(*Predictor) error

// WithLogger sets the logger. Default: disabled.
func WithLogger(l zerolog.Logger) Option {
	return func(p *Predictor) error { p.log = l.With().Str("component", "predict").Logger(); return nil }
}

// WithMetrics registers the predictor's metrics on reg.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(p *Predictor) error { return p.m.register(reg) }
}

// New returns a predictor in front of next. Profiles live in rdb under
// "{ember}:profiles:".
func New(cfg Config, next Invoker, rdb redis.UniversalClient, r scheduler.Resolver, l Loader, hot HotCounter, opts ...Option) (*Predictor, error) {
	if next == nil || rdb == nil || r == nil || l == nil || hot == nil {
		return nil, errors.New("predict: invoker, Redis, resolver, loader and hot counter are required")
	}
	cfg.setDefaults()
	store, err := NewStore(rdb, "{ember}:", cfg.HalfLife)
	if err != nil {
		return nil, err
	}
	p := &Predictor{
		cfg: cfg, next: next, store: store, resolver: r, loader: l, hot: hot,
		log: zerolog.Nop(), m: newMetrics(),
		running: map[string]int{}, loading: map[string]int{}, pending: batch{}, cache: map[string]*tenantProfiles{},
	}
	p.base, p.cancel = context.WithCancel(context.Background())
	for _, o := range opts {
		if err := o(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Invoke runs inv through next, predicting what follows it and learning
// from it.
func (p *Predictor) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	now := time.Now()
	if inv.Cause.Function == "" && (inv.Source == "api" || inv.Source == "async") {
		// Only an authenticated caller of the tenant names a cause (a
		// public route's caller could write the tenant's profiles).
		inv.Cause = causeFromTrace(inv.TraceID)
	}
	inv.TraceID = stampTrace(inv.TraceID, inv.Function, now)
	k := inv.Tenant + "/" + inv.Function
	p.starting(inv, k, now)
	res, err := p.next.Invoke(ctx, inv)
	p.finished(inv, k, res, err)
	return res, err
}

// starting counts inv (k: tenant/function) as running and starts the loads
// ahead its function's profiles call for. (An invocation of a function whose load is in flight
// does not wait for it: measured here, waiting made its start later than
// starting the code on another instance, in a burst on 2 cores.)
func (p *Predictor) starting(inv *invoke.Invocation, k string, now time.Time) {
	p.mu.Lock()
	p.running[k]++
	n := p.running[k]
	tp := p.cache[inv.Tenant]
	if tp == nil {
		tp = &tenantProfiles{}
		p.cache[inv.Tenant] = tp
	}
	tp.used = now
	type job struct {
		e    Profile
		need int
	}
	var todo []job
	var next []Profile
	if !inv.Retry { // a retry was predicted for when it first ran
		next = tp.from[inv.Function]
	}
	for _, e := range next {
		tk := inv.Tenant + "/" + e.To
		// Enough instances of To for the invocations coming: one per
		// running From, but no more than one beyond To's own running ones
		// (a To quicker than From needs fewer instances than From).
		need := min(n, p.running[tk]+1)
		switch {
		case !p.worth(e):
		case p.loading[tk] >= need:
		case p.loadingAll >= p.cfg.MaxLoading:
			p.m.loads.WithLabelValues("over_limit").Inc()
		default:
			p.loading[tk]++
			p.loadingAll++
			todo = append(todo, job{e, need})
		}
	}
	refresh := !tp.refreshing && now.Sub(tp.at) >= p.cfg.RefreshEvery
	if refresh {
		tp.refreshing = true
	}
	p.mu.Unlock()
	for _, j := range todo {
		go p.load(j.e, j.need)
	}
	if refresh {
		go p.refresh(inv.Tenant)
	}
}

// worth says whether pair e is predicted: To follows From often enough and
// its loads ahead are used. (Delay and Load are not compared: a load starts
// before From's claim and its container start, which Delay leaves out, and
// loads measured in a burst are slow; a load that ends after To arrived
// still serves the next To, and the hit ratio judges it.)
func (p *Predictor) worth(e Profile) bool {
	if e.Follows < p.cfg.MinFollows || e.Probability() < p.cfg.MinProbability {
		return false
	}
	return e.Predictions < p.cfg.SuspendAfter || e.Hits >= p.cfg.MinHitRatio*e.Predictions
}

// loadTimeout bounds one load ahead.
const loadTimeout = 30 * time.Second

// load loads e.To ahead unless n idle instances already hold it.
func (p *Predictor) load(e Profile, n int) {
	tk := e.Tenant + "/" + e.To
	defer func() {
		p.mu.Lock()
		if p.loading[tk]--; p.loading[tk] <= 0 {
			delete(p.loading, tk)
		}
		p.loadingAll--
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(p.base, loadTimeout)
	defer cancel()
	v, err := p.resolver.Resolve(ctx, e.Tenant, e.To, e.Qualifier)
	if err != nil {
		p.m.loads.WithLabelValues("unresolved").Inc()
		p.log.Debug().Err(err).Str("tenant", e.Tenant).Str("function", e.To).Msg("predicted function not found")
		return
	}
	if idle, err := p.hot.IdleHot(ctx, pool.VersionKey(v.Tenant, v.Function, v.Version)); err == nil && idle >= int64(n) {
		p.m.loads.WithLabelValues("already_hot").Inc()
		return
	}
	began := time.Now()
	ahead, err := p.loader.LoadAhead(ctx, v, tag(e.From, e.To))
	// No instance free now, often for a moment (a burst of claims queued
	// behind one another): tried again while half the predicted delay
	// remains, so the load can still be in time.
	for wait := 10 * time.Millisecond; err == nil && ahead == scheduler.AheadNoInstance &&
		time.Since(began)+wait < e.Delay/2; wait *= 2 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ahead, err = p.loader.LoadAhead(ctx, v, tag(e.From, e.To))
	}
	took := time.Since(began)
	switch {
	case err != nil:
		p.m.loads.WithLabelValues("failed").Inc()
		p.log.Warn().Err(err).Str("tenant", e.Tenant).Str("from", e.From).Str("to", e.To).Msg("load ahead failed")
	case ahead == scheduler.AheadLoaded:
		p.m.loads.WithLabelValues("loaded").Inc()
		p.mu.Lock()
		d := p.pending.field(e.Tenant, edgeField(e.From, e.To))
		d.P++
		d.L += float64(took) / float64(time.Millisecond)
		d.LN++
		p.mu.Unlock()
	case ahead == scheduler.AheadAlreadyHot:
		p.m.loads.WithLabelValues("already_hot").Inc()
	default:
		p.m.loads.WithLabelValues("no_instance").Inc()
	}
}

// finished learns from inv: a run of its function, the pair its cause
// forms with it, and whether it used a load ahead.
func (p *Predictor) finished(inv *invoke.Invocation, k string, res invoke.Result, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running[k]--; p.running[k] <= 0 {
		delete(p.running, k)
	}
	if err != nil { // nothing is known to have run
		return
	}
	if from, to, ok := parseTag(res.PreloadTag); ok && to == inv.Function {
		p.pending.field(inv.Tenant, edgeField(from, to)).H++
		p.m.hits.Inc()
	}
	if inv.Retry { // a retry is the same run again, and follows nothing new
		return
	}
	p.pending.field(inv.Tenant, runField(inv.Function)).S++
	if c := inv.Cause; validName(c.Function) {
		d := p.pending.field(inv.Tenant, edgeField(c.Function, inv.Function))
		d.S += float64(max(1, c.Runs))
		d.Q = inv.Qualifier
		if d.Q == "" {
			d.Q = registry.Latest
		}
		if !c.Started.IsZero() && !res.HandlerStart.IsZero() {
			if delay := res.HandlerStart.Sub(c.Started); delay >= 0 {
				d.D += float64(delay) / float64(time.Millisecond)
				d.DN++
			}
		}
	}
}

// refresh reads tenant's profiles into the cache.
func (p *Predictor) refresh(tenant string) {
	ctx, cancel := context.WithTimeout(p.base, 5*time.Second)
	defer cancel()
	ps, err := p.store.Profiles(ctx, tenant, time.Now())
	if err != nil && p.base.Err() == nil {
		p.log.Warn().Err(err).Str("tenant", tenant).Msg("read task profiles")
	}
	from := map[string][]Profile{}
	for _, e := range ps {
		from[e.From] = append(from[e.From], e)
	}
	p.mu.Lock()
	tp := p.cache[tenant]
	tp.refreshing, tp.at = false, time.Now()
	if err == nil {
		tp.from = from
	}
	p.mu.Unlock()
}

// Run writes what was learned to Redis every FlushEvery and keeps the
// profiles of the tenants that ran something within a half-life fresh
// (every RefreshEvery, so that a burst after a quiet time finds them read)
// until ctx is done; then it flushes once more and stops loads ahead.
func (p *Predictor) Run(ctx context.Context) error {
	defer p.cancel()
	flush := time.NewTicker(p.cfg.FlushEvery)
	defer flush.Stop()
	refresh := time.NewTicker(p.cfg.RefreshEvery)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			p.flush(fctx)
			cancel()
			return nil
		case <-flush.C:
			p.flush(ctx)
		case <-refresh.C:
			p.refreshActive()
		}
	}
}

// refreshActive re-reads the cached profiles of tenants active within a
// half-life and forgets the others'.
func (p *Predictor) refreshActive() {
	var todo []string
	p.mu.Lock()
	for tenant, tp := range p.cache {
		switch {
		case time.Since(tp.used) > p.cfg.HalfLife:
			if !tp.refreshing {
				delete(p.cache, tenant)
			}
		case !tp.refreshing:
			tp.refreshing = true
			todo = append(todo, tenant)
		}
	}
	p.mu.Unlock()
	for _, t := range todo {
		go p.refresh(t)
	}
}

func (p *Predictor) flush(ctx context.Context) {
	p.mu.Lock()
	b := p.pending
	p.pending = batch{}
	p.mu.Unlock()
	if err := p.store.Apply(ctx, time.Now(), b); err != nil {
		// Lost: profiles are estimates and the next batches rebuild them.
		p.m.flushErrors.Inc()
		p.log.Warn().Err(err).Msg("task profiles not updated")
	}
}

// Profiles returns tenant's profiles (every tenant's for "").
func (p *Predictor) Profiles(ctx context.Context, tenant string) ([]Profile, error) {
	tenants := []string{tenant}
	if tenant == "" {
		var err error
		if tenants, err = p.store.Tenants(ctx); err != nil {
			return nil, err
		}
	}
	out := []Profile{}
	for _, t := range tenants {
		ps, err := p.store.Profiles(ctx, t, time.Now())
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	return out, nil
}

// tag marks a load ahead for pair from -> to; the loaded container's first
// invocation returns it.
func tag(from, to string) string { return "predict:" + from + ":" + to }

func parseTag(t string) (from, to string, ok bool) {
	rest, ok := strings.CutPrefix(t, "predict:")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ":")
}
