package emberd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/consumers/lagmon"
	"github.com/ember-run/ember/engine/asyncinv"
	"github.com/ember-run/ember/engine/codepeers"
	"github.com/ember-run/ember/engine/codestore"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/predict"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/scheduler"
	"github.com/ember-run/ember/engine/tenants"
	"github.com/ember-run/ember/hostagent"
	"github.com/ember-run/ember/hostagent/codefetch"
	"github.com/ember-run/ember/internal/redisconn"
)

// Daemon is a running emberd. Build it with New, then call Run once.
type Daemon struct {
	cfg       Config
	log       zerolog.Logger
	brokers   []string
	broker    *embedded.Broker
	rdb       redis.UniversalClient
	metrics   *prometheus.Registry
	registry  *registry.Registry
	tenants   *tenants.Store
	code      *codestore.Store
	pool      *pool.Store
	sched     *scheduler.Scheduler
	predict   *predict.Predictor // nil when off
	cons      *consumers.Manager
	stats     *stats
	gauges    *gauges
	lag       *lagmon.Monitor
	topics    *consumers.Topics
	usage     *usageInvoker // the scheduler, plus a usage record per invocation
	agent     *hostagent.Agent
	closeAgt  func()
	listener  net.Listener
	http      *http.Server
	id        identity
	peerLis   net.Listener
	peer      *http.Server
	peers     *codepeers.Peers
	async     *asyncinv.Queue
	asyncCons *consumers.Manager // of the async queue topic
	gw        *http.Server       // tenants' routes; nil when off
	gwLis     net.Listener
	ready     chan struct{}
}

// New connects to Redis (and containerd for the in-process agent), starts
// the embedded broker when no brokers are given, and binds the API
// listener. Nothing runs until Run.
func New(ctx context.Context, cfg Config) (d *Daemon, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d = &Daemon{cfg: cfg, log: cfg.Log.With().Str("component", "emberd").Logger(), stats: newStats(), ready: make(chan struct{})}
	// Not d: every failure below returns nil for it.
	half := d
	defer func() {
		if err != nil {
			half.close()
		}
	}()
	d.metrics = prometheus.NewRegistry()
	d.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if d.gauges, err = newGauges(d.metrics); err != nil {
		return nil, err
	}

	if d.rdb, err = redisconn.Client(cfg.Redis, cfg.RedisCA); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = d.rdb.Ping(pctx).Err()
	cancel()
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", redisconn.Redacted(cfg.Redis), err)
	}

	d.brokers = cfg.Brokers
	if len(d.brokers) == 0 {
		d.broker, err = embedded.Start(embedded.Config{
			ListenAddr: cfg.EmbeddedBrokerAddr,
			DataDir:    filepath.Join(cfg.StateDir, "kafka"),
		})
		if err != nil {
			return nil, fmt.Errorf("embedded broker: %w", err)
		}
		d.brokers = d.broker.Addrs()
		d.log.Info().Strs("brokers", d.brokers).Msg("embedded Kafka-protocol broker started")
	}

	if d.registry, err = registry.New(d.rdb, registry.WithLogger(cfg.Log)); err != nil {
		return nil, err
	}
	if d.tenants, err = tenants.New(d.rdb, tenants.WithAdminKey(cfg.AdminKey)); err != nil {
		return nil, err
	}
	if d.topics, err = consumers.NewTopics(d.brokers, cfg.Kafka); err != nil {
		return nil, err
	}
	if err := d.ensureSystemTopics(ctx); err != nil {
		return nil, err
	}
	if d.code, err = codestore.New(codestore.Config{Dir: filepath.Join(cfg.StateDir, "code")}); err != nil {
		return nil, err
	}
	if d.pool, err = pool.New(d.rdb); err != nil {
		return nil, err
	}
	if d.id, err = loadIdentity(cfg.PKIDir, identityHosts(cfg)); err != nil {
		return nil, fmt.Errorf("emberd identity in %s: %w", cfg.PKIDir, err)
	}
	if d.sched, err = scheduler.New(cfg.Scheduler, d.pool, d.registry, scheduler.WithTLS(d.id.cert, d.id.roots), scheduler.WithLogServices(d.registry),
		scheduler.WithLogger(cfg.Log), scheduler.WithMetrics(d.metrics)); err != nil {
		return nil, err
	}
	var next invoker = d.sched
	if !cfg.NoPrediction {
		if d.predict, err = predict.New(cfg.Prediction, d.sched, d.rdb, d.registry, d.sched, d.pool,
			predict.WithLogger(cfg.Log), predict.WithMetrics(d.metrics)); err != nil {
			return nil, err
		}
		next = d.predict
	}
	if d.usage, err = newUsageInvoker(next, d.brokers, cfg.Kafka.Transport(), cfg.UsageTopic, d.metrics, cfg.Log); err != nil {
		return nil, err
	}
	if d.cons, err = consumers.New(d.brokers, d.usage,
		consumers.WithLogger(cfg.Log), consumers.WithRegistry(d.metrics), consumers.WithObserver(d.stats),
		consumers.WithConn(cfg.Kafka), consumers.WithDrainTimeout(cfg.DrainTimeout),
		consumers.WithGroupTimings(cfg.SessionTimeout, cfg.SessionTimeout/10, cfg.RebalanceTimeout),
		consumers.WithCommitInterval(cfg.CommitInterval)); err != nil {
		return nil, err
	}
	if err := d.newAsync(); err != nil {
		return nil, err
	}
	d.lag = d.newLagMonitor()
	if err := d.metrics.Register(d.lag.Collector()); err != nil {
		return nil, err
	}
	if cfg.PeerListen != "" {
		if d.peerLis, err = net.Listen("tcp", cfg.PeerListen); err != nil {
			return nil, fmt.Errorf("peer listen %s: %w", cfg.PeerListen, err)
		}
	}
	if d.peers, err = d.codePeers(ctx); err != nil {
		return nil, err
	}
	if cfg.Agent {
		agentCfg := cfg.AgentConfig.WithDefaults()
		agentTLS, err := d.id.agentTLS(cfg.PKIDir, agentCfg.AgentID)
		if err != nil {
			return nil, fmt.Errorf("in-process agent identity: %w", err)
		}
		d.agent, d.closeAgt, err = hostagent.NewContainerd(ctx, agentCfg, cfg.Containerd, hostagent.Deps{
			Redis: d.rdb, Pool: d.pool, Log: cfg.Log,
			Code:    replicatedCode{peers: d.peers, dir: codefetch.Dir{Root: filepath.Join(cfg.StateDir, "code")}},
			Metrics: d.metrics, TLS: agentTLS,
		})
		if err != nil {
			return nil, err
		}
		d.sched.UseLocalAgent(agentCfg.AgentID, d.agent.LocalClient())
	}
	if d.http, d.peer, err = d.apiServer(); err != nil {
		return nil, err
	}
	if d.listener, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("api listen %s: %w", cfg.Listen, err)
	}
	if err := d.gatewayServer(); err != nil {
		return nil, err
	}
	return d, nil
}

// Addr is the API's address.
func (d *Daemon) Addr() string { return d.listener.Addr().String() }

// identityHosts are the names emberd's certificate carries besides
// "emberd": the host name and the peer listener's host.
func identityHosts(cfg Config) []string {
	hosts := []string{"localhost", "127.0.0.1"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	if h, _, err := net.SplitHostPort(cfg.PeerListen); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	return hosts
}

// Brokers are the Kafka bootstrap addresses in use.
func (d *Daemon) Brokers() []string { return d.brokers }

// Ready is closed once the API serves and, with an in-process agent, its
// warming pool is registered.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// Run serves until ctx is done, then shuts down in stages: consumers stop
// fetching, finish in-flight invocations and commit; then the API,
// scheduler and agent stop; the embedded broker closes last.
func (d *Daemon) Run(ctx context.Context) error {
	var stopping time.Time // when the stop began
	defer func() {
		d.close()
		if !stopping.IsZero() {
			d.log.Info().Dur("took", time.Since(stopping)).Msg("emberd stopped")
		}
	}()
	core, stopCore := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCore()
	coreG, core := errgroup.WithContext(core)
	coreG.Go(func() error { return d.registry.Run(core) })
	coreG.Go(func() error { return d.tenants.Run(core) })
	coreG.Go(func() error { return d.sched.Run(core) })
	coreG.Go(func() error { return d.usage.run(core) })
	if d.predict != nil {
		coreG.Go(func() error { return d.predict.Run(core) })
	}
	coreG.Go(func() error { return d.gauges.run(core, d) })
	coreG.Go(func() error { return d.lag.Run(core) })
	coreG.Go(func() error { return d.peers.Run(core) })
	if d.agent != nil {
		coreG.Go(func() error { return d.agent.Run(core) })
	}
	coreG.Go(func() error {
		if err := d.http.Serve(d.listener); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api: %w", err)
		}
		return nil
	})
	if d.peerLis != nil {
		coreG.Go(func() error {
			if err := d.peer.ServeTLS(d.peerLis, "", ""); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("peer: %w", err)
			}
			return nil
		})
	}
	if d.gwLis != nil {
		coreG.Go(func() error {
			if err := d.gw.Serve(d.gwLis); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("gateway: %w", err)
			}
			return nil
		})
	}
	coreG.Go(func() error {
		<-core.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errs := []error{d.http.Shutdown(sctx), d.peer.Shutdown(sctx)}
		if d.gw != nil {
			errs = append(errs, d.gw.Shutdown(sctx))
		}
		return errors.Join(errs...)
	})

	consCtx, stopCons := context.WithCancel(core)
	defer stopCons()
	consG, consCtx := errgroup.WithContext(consCtx)
	consG.Go(func() error { return d.cons.Run(consCtx) })
	consG.Go(func() error { return d.asyncCons.Run(consCtx) })
	consG.Go(func() error { return d.async.RunDeferred(consCtx, d.idleCapacity) })
	consG.Go(func() error { return d.reconcileLoop(consCtx) })
	consG.Go(func() error {
		if d.agent != nil {
			select {
			case <-d.agent.Ready():
			case <-consCtx.Done():
				return nil
			}
		}
		close(d.ready)
		d.log.Info().Str("api", d.Addr()).Str("gateway", d.GatewayAddr()).Strs("brokers", d.brokers).Msg("emberd ready")
		return nil
	})

	var err error
	select {
	case <-ctx.Done():
	case <-consCtx.Done(): // a consumer-side failure
	case <-core.Done(): // a core failure
	}
	stopping = time.Now()
	d.log.Info().Msg("stopping: consumers first")
	stopCons()
	err = errors.Join(err, consG.Wait())
	d.sched.ReleaseHeld() // while the agents still have the instances
	d.log.Info().Dur("took", time.Since(stopping)).Msg("consumers stopped; stopping the API, scheduler and agent")
	stopCore()
	err = errors.Join(err, coreG.Wait())
	return err
}

// reconcileLoop applies the registry's enabled bindings to the consumers
// on every change notification, and every ReconcileEvery regardless.
func (d *Daemon) reconcileLoop(ctx context.Context) error {
	changes := d.registry.WatchBindings(ctx)
	t := time.NewTicker(d.cfg.ReconcileEvery)
	defer t.Stop()
	for {
		if err := d.reconcile(ctx); err != nil && ctx.Err() == nil {
			d.log.Error().Err(err).Msg("apply bindings")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-t.C:
		}
	}
}

func (d *Daemon) reconcile(ctx context.Context) error {
	bs, skipped, err := d.registry.ActiveBindings(ctx)
	if err != nil {
		return err
	}
	for key, reason := range skipped {
		d.log.Warn().Str("binding", key).Str("reason", reason).Msg("binding not applied")
	}
	out := make([]consumers.Binding, 0, len(bs))
	for _, b := range bs {
		out = append(out, consumerBinding(b))
	}
	return d.cons.Apply(out)
}

// ensureSystemTopics creates Ember's own topics (the usage topic) and
// records them as Ember's, so that no tenant can produce to them. It
// retries while the broker is not ready, for at most 30 s.
func (d *Daemon) ensureSystemTopics(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := d.topics.CreateTopic(ctx, d.cfg.UsageTopic, -1)
		if err == nil {
			_, err = d.registry.PutTopic(ctx, registry.Topic{Name: d.cfg.UsageTopic, Owner: registry.SystemOwner})
		}
		if err == nil {
			err = d.ensureAsyncTopic(ctx)
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create the system topics: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func consumerBinding(b registry.Binding) consumers.Binding {
	return consumers.Binding{
		ID: b.Key(), Tenant: b.Tenant, Function: b.Function, Qualifier: b.Qualifier, Topic: b.Topic,
		GroupID: b.GroupID, ResultTopic: b.ResultTopic, DeadLetterTopic: b.DLQTopic,
		Settings: b.Settings, Rewind: b.Rewind,
	}
}

func (d *Daemon) close() {
	if d.topics != nil {
		_ = d.topics.Close()
	}
	if d.closeAgt != nil {
		d.closeAgt()
	}
	if d.listener != nil {
		_ = d.listener.Close()
	}
	if d.gwLis != nil {
		_ = d.gwLis.Close()
	}
	if d.peerLis != nil {
		_ = d.peerLis.Close()
	}
	if d.broker != nil {
		d.broker.Close()
	}
	if d.rdb != nil {
		_ = d.rdb.Close()
	}
}
