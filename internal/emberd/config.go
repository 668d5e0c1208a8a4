package emberd

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/asyncinv"
	"github.com/ember-run/ember/engine/predict"
	"github.com/ember-run/ember/engine/scheduler"
	"github.com/ember-run/ember/hostagent"
)

// Config configures the daemon. Zero fields take the documented defaults.
type Config struct {
	// StateDir holds the embedded broker's data (kafka/), the code store
	// (code/) and the in-process agent's instance directories (agent/).
	// Required.
	StateDir string
	// Brokers are Kafka bootstrap addresses. Default: none, which starts an
	// embedded Kafka-protocol broker (kfake) persisted in StateDir/kafka.
	Brokers []string
	// Kafka is how to connect to Brokers: TLS and SASL, both optional.
	Kafka consumers.Conn
	// EmbeddedBrokerAddr is the embedded broker's listen address.
	// Default: "127.0.0.1:9092".
	EmbeddedBrokerAddr string
	// Redis is the Redis address: host:port, or a redis:// or rediss://
	// (TLS) URL. Required.
	Redis string
	// RedisCA is the CA file a rediss:// server's certificate must chain
	// to. Default: the system roots.
	RedisCA string
	// Listen is the HTTP API address. Default: "127.0.0.1:8080".
	Listen string
	// AdminKey is the administrator's API key. Required (cmd/emberd loads
	// it from StateDir/admin.key or EMBER_ADMIN_KEY).
	AdminKey string
	// MetricsToken, when set, is accepted on /metrics besides AdminKey.
	MetricsToken string
	// PKIDir holds the mutual-TLS authority and certificates between emberd
	// and agents (see internal/pki): ca.crt, emberd.crt/.key, and, when
	// emberd issues them, ca.key and the in-process agent's. Created on
	// first start. Default: StateDir/pki.
	PKIDir string
	// PeerListen serves agents on other hosts (code download), only over
	// mutual TLS with an agent certificate. Default: "" (off; cmd/emberd
	// listens on 127.0.0.1:7948 unless told otherwise).
	PeerListen string
	// PeerAdvertise is the host:port other replicas reach the peer
	// listener at. Default: its address (the host name when it listens on
	// every interface).
	PeerAdvertise string

	// Agent hosts a host agent in this process. Default: false here;
	// cmd/emberd turns it on unless --agent=false.
	Agent bool
	// AgentConfig configures the in-process agent; its StateDir defaults to
	// StateDir/agent.
	AgentConfig hostagent.Config
	// Containerd reaches containerd for the in-process agent.
	Containerd hostagent.ContainerdSetup

	// Scheduler tunes claiming and waiting.
	Scheduler scheduler.Config
	// Prediction tunes task profiles and loads ahead (predictive
	// pre-warming).
	Prediction predict.Config
	// NoPrediction turns prediction off: nothing is learned or loaded ahead.
	NoPrediction bool
	// SessionTimeout of the consumer groups. Default: 10s (kfake's minimum is 6s).
	SessionTimeout time.Duration
	// RebalanceTimeout of the consumer groups: how long the group waits
	// for members to rejoin, and so bounds (at three quarters of it) how
	// long revoked partitions drain. Default: 60s.
	RebalanceTimeout time.Duration
	// DrainTimeout bounds how long in-flight invocations may finish when a
	// binding stops or its partitions are revoked. Default: 30s.
	DrainTimeout time.Duration
	// CommitInterval of consumer offsets. Default: 1s.
	CommitInterval time.Duration
	// AsyncTopic queues asynchronous invocations. Default:
	// asyncinv.DefaultTopic ("ember.async").
	AsyncTopic string
	// AsyncRetryDelay is the wait before an asynchronous invocation's first
	// retry; it doubles for the second. Default: 1s.
	AsyncRetryDelay time.Duration
	// GatewayListen serves tenants' HTTP routes at /{tenant}/{path...}
	// ("": off).
	GatewayListen string
	// GatewayURL is where clients reach the gateway, shown with each route.
	// Default: http://GatewayListen.
	GatewayURL string
	// LagInterval is how often the lag monitor samples every binding's
	// offsets (its status window is 12 samples). Default: 5s.
	LagInterval time.Duration
	// ReconcileEvery re-reads the bindings even without a change
	// notification. Default: 30s.
	ReconcileEvery time.Duration

	// UsageTopic receives one JSON usage record per invocation
	// (UsageRecord). Default: DefaultUsageTopic ("ember.usage").
	UsageTopic string

	// Log is the base logger. Default: disabled.
	Log zerolog.Logger
}

func (c Config) withDefaults() Config {
	if c.EmbeddedBrokerAddr == "" {
		c.EmbeddedBrokerAddr = "127.0.0.1:9092"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.PKIDir == "" && c.StateDir != "" {
		c.PKIDir = filepath.Join(c.StateDir, "pki")
	}
	if c.AgentConfig.StateDir == "" && c.StateDir != "" {
		c.AgentConfig.StateDir = filepath.Join(c.StateDir, "agent")
	}
	if c.GatewayURL == "" && c.GatewayListen != "" {
		c.GatewayURL = "http://" + c.GatewayListen
	}
	if c.AsyncTopic == "" {
		c.AsyncTopic = asyncinv.DefaultTopic
	}
	if c.AsyncRetryDelay == 0 {
		c.AsyncRetryDelay = time.Second
	}
	if c.LagInterval == 0 {
		c.LagInterval = 5 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 60 * time.Second
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Second
	}
	if c.ReconcileEvery == 0 {
		c.ReconcileEvery = 30 * time.Second
	}
	if c.UsageTopic == "" {
		c.UsageTopic = DefaultUsageTopic
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.StateDir == "" {
		errs = append(errs, errors.New("state dir is required"))
	}
	if c.Redis == "" {
		errs = append(errs, errors.New("redis address is required"))
	}
	if c.AdminKey == "" {
		errs = append(errs, errors.New("the administrator key is required"))
	}
	if c.Agent {
		if c.Containerd.Socket == "" {
			errs = append(errs, errors.New("the in-process agent needs a containerd socket"))
		}
		if c.Containerd.InitBinary == "" {
			errs = append(errs, errors.New("the in-process agent needs the ember-init binary"))
		}
		if err := c.AgentConfig.WithDefaults().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("agent: %w", err))
		}
	}
	if err := c.Scheduler.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.SessionTimeout != 0 && c.SessionTimeout < 6*time.Second {
		errs = append(errs, fmt.Errorf("session timeout %s is below Kafka's minimum of 6s", c.SessionTimeout))
	}
	if c.LagInterval < 0 || (c.LagInterval > 0 && c.LagInterval < 100*time.Millisecond) {
		errs = append(errs, fmt.Errorf("lag interval %s: want at least 100ms", c.LagInterval))
	}
	if c.RebalanceTimeout < c.SessionTimeout {
		errs = append(errs, fmt.Errorf("rebalance timeout %s is below the session timeout %s", c.RebalanceTimeout, c.SessionTimeout))
	}
	if len(c.Brokers) == 0 && (c.Kafka.TLS != nil || c.Kafka.SASL != nil) {
		errs = append(errs, errors.New("Kafka TLS and SASL are for --brokers (the embedded broker has neither)"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("emberd config: %w", err)
	}
	return nil
}
