// Command emberd is Ember's daemon: Kafka consumers for every binding, the
// scheduler over Redis-held pool state, the HTTP API and, by default, the
// host agent in the same process. With no --brokers it starts an embedded
// Kafka-protocol broker persisted under --state-dir. See internal/emberd.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/predict"
	"github.com/ember-run/ember/engine/tenants"
	"github.com/ember-run/ember/hostagent"
	"github.com/ember-run/ember/internal/agentflags"
	"github.com/ember-run/ember/internal/emberd"
	"github.com/ember-run/ember/internal/logging"
)

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

type flags struct {
	stateDir, brokers, brokerAddr, redis, listen, gatewayListen, gatewayURL string
	containerd, namespace, initBinary                                       string
	agent                                                                   bool
	agentID, agentListen                                                    string
	agentFlags                                                              agentflags.Flags
	sessionTimeout, lagInterval, asyncRetryDelay                            time.Duration
	debugAddr                                                               string
	adminKeyFile, pkiDir, peerListen, redisCA                               string
	peerAdvertise                                                           string
	logFormat, logLevel                                                     string
	kafkaTLS, predict                                                       bool
	predictHalfLife                                                         time.Duration
	kafkaCA, kafkaSASL, kafkaUser, kafkaPassFile                            string
}

func main() {
	if hostagent.IsKeeper() { // a CRIU restore keeper (hostagent/keeper.go)
		hostagent.RunKeeper()
	}
	var f flags
	cmd := &cobra.Command{
		Use:           "emberd",
		Short:         "Ember daemon: Kafka consumers, scheduler, API (and the host agent)",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.stateDir, "state-dir", envOr("EMBER_STATE", "/var/lib/ember"), "state directory: embedded broker data, code store, instance dirs (env EMBER_STATE)")
	fl.StringVar(&f.brokers, "brokers", envOr("EMBER_BROKERS", ""), "Kafka bootstrap servers host:port,... (env EMBER_BROKERS); empty starts an embedded broker")
	fl.BoolVar(&f.kafkaTLS, "kafka-tls", os.Getenv("EMBER_KAFKA_TLS") == "true", "connect to --brokers over TLS (env EMBER_KAFKA_TLS=true)")
	fl.StringVar(&f.kafkaCA, "kafka-ca", envOr("EMBER_KAFKA_CA", ""), "CA file the brokers' certificates chain to (implies --kafka-tls; default: the system roots)")
	fl.StringVar(&f.kafkaSASL, "kafka-sasl", envOr("EMBER_KAFKA_SASL", ""), "SASL mechanism to the brokers: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env EMBER_KAFKA_SASL)")
	fl.StringVar(&f.kafkaUser, "kafka-user", envOr("EMBER_KAFKA_USER", ""), "SASL user (env EMBER_KAFKA_USER); the password comes from EMBER_KAFKA_PASSWORD or --kafka-password-file")
	fl.StringVar(&f.kafkaPassFile, "kafka-password-file", "", "file holding the SASL password")
	fl.StringVar(&f.brokerAddr, "embedded-broker", "127.0.0.1:9092", "listen address of the embedded broker")
	fl.StringVar(&f.redis, "redis", envOr("EMBER_REDIS", "127.0.0.1:6390"), "Redis host:port, a redis:// or rediss:// (TLS) URL, or redis-sentinel://host:port,.../MASTER (env EMBER_REDIS)")
	fl.StringVar(&f.redisCA, "redis-ca", envOr("EMBER_REDIS_CA", ""), "CA file for a rediss:// server (env EMBER_REDIS_CA)")
	fl.StringVar(&f.listen, "listen", envOr("EMBER_LISTEN", "127.0.0.1:8080"), "HTTP API address (env EMBER_LISTEN)")
	fl.StringVar(&f.containerd, "containerd", envOr("EMBER_CONTAINERD", "/run/ember/containerd.sock"), "containerd socket for the in-process agent (env EMBER_CONTAINERD)")
	fl.StringVar(&f.namespace, "namespace", "ember", "containerd namespace")
	fl.StringVar(&f.initBinary, "init-binary", "", "static ember-init binary; the instance image also takes the ember-shim beside it, if any (default: ember-init next to this executable)")
	fl.BoolVar(&f.agent, "agent", true, "host the host agent in this process (one-machine set-up)")
	fl.StringVar(&f.agentID, "agent-id", "", "in-process agent's id (default: the host name)")
	fl.StringVar(&f.agentListen, "agent-listen", hostagent.DefaultListenAddr, "in-process agent's gRPC dispatch address")
	f.agentFlags.Register(fl)
	fl.StringVar(&f.gatewayListen, "gateway-listen", envOr("EMBER_GATEWAY_LISTEN", "127.0.0.1:8081"), "serve tenants' HTTP routes at http://ADDR/TENANT/PATH (env EMBER_GATEWAY_LISTEN; empty: off)")
	fl.StringVar(&f.gatewayURL, "gateway-url", envOr("EMBER_GATEWAY_URL", ""), "where clients reach the gateway, shown with each route (env EMBER_GATEWAY_URL; default http://<gateway-listen>)")
	fl.DurationVar(&f.asyncRetryDelay, "async-retry-delay", time.Second, "wait before an asynchronous invocation's first retry after a function error; doubled for the second")
	fl.DurationVar(&f.lagInterval, "lag-interval", 5*time.Second, "how often the lag monitor samples every binding (its status window is 12 samples)")
	fl.DurationVar(&f.sessionTimeout, "session-timeout", 10*time.Second, "consumer group session timeout: how long a dead emberd holds its partitions (Kafka's minimum is usually 6s)")
	fl.BoolVar(&f.predict, "predict", true, "learn which function follows which (task profiles) and load the next one's code ahead")
	fl.DurationVar(&f.predictHalfLife, "predict-half-life", 10*time.Minute, "task profile counts halve this often")
	fl.StringVar(&f.adminKeyFile, "admin-key-file", "", "file holding the administrator's API key, created (0600) on first start (default <state-dir>/admin.key; env EMBER_ADMIN_KEY overrides the file)")
	fl.StringVar(&f.pkiDir, "pki-dir", "", "mutual-TLS authority and certificates between emberd and agents, created on first start (default <state-dir>/pki)")
	fl.StringVar(&f.peerListen, "peer-listen", envOr("EMBER_PEER_LISTEN", "127.0.0.1:7948"), "serve code to agents on other hosts and to other replicas here, mutual TLS only (env EMBER_PEER_LISTEN; empty: off)")
	fl.StringVar(&f.peerAdvertise, "peer-advertise", envOr("EMBER_PEER_ADVERTISE", ""), "host:port other emberd replicas reach the peer listener at, to fetch packages they lack (default: the listener's address)")
	fl.StringVar(&f.debugAddr, "debug-addr", "", "serve Go pprof profiles on this loopback address (off by default)")
	fl.StringVar(&f.logFormat, "log-format", "auto", "auto|json|console")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug|info|warn|error")
	cmd.AddCommand(pkiCmd())
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "emberd:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, f flags) error {
	log, err := logging.New(os.Stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	stateDir, err := filepath.Abs(f.stateDir)
	if err != nil {
		return fmt.Errorf("--state-dir: %w", err)
	}
	initBin, err := hostagent.InitBinary(f.initBinary)
	if err != nil {
		return err
	}
	adminKey := os.Getenv("EMBER_ADMIN_KEY")
	if adminKey == "" {
		path := f.adminKeyFile
		if path == "" {
			path = filepath.Join(stateDir, "admin.key")
		}
		var created bool
		if adminKey, created, err = tenants.LoadOrCreateAdminKey(path); err != nil {
			return fmt.Errorf("administrator key: %w", err)
		}
		if created {
			log.Info().Str("file", path).Msg("created the administrator key (it is never logged; read it from the file)")
		}
	}
	var brokers []string
	for _, b := range strings.Split(f.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	kafkaConn, err := kafkaConn(f)
	if err != nil {
		return err
	}
	cfg := emberd.Config{
		StateDir:           stateDir,
		Brokers:            brokers,
		Kafka:              kafkaConn,
		EmbeddedBrokerAddr: f.brokerAddr,
		Redis:              f.redis,
		RedisCA:            f.redisCA,
		Listen:             f.listen,
		AdminKey:           adminKey,
		MetricsToken:       os.Getenv("EMBER_METRICS_TOKEN"),
		PKIDir:             f.pkiDir,
		PeerListen:         f.peerListen,
		PeerAdvertise:      f.peerAdvertise,
		Agent:              f.agent,
		AgentConfig:        hostagent.Config{AgentID: f.agentID, ListenAddr: f.agentListen},
		SessionTimeout:     f.sessionTimeout,
		LagInterval:        f.lagInterval,
		AsyncRetryDelay:    f.asyncRetryDelay,
		NoPrediction:       !f.predict,
		Prediction:         predict.Config{HalfLife: f.predictHalfLife},
		GatewayListen:      f.gatewayListen,
		GatewayURL:         f.gatewayURL,
		Containerd:         hostagent.ContainerdSetup{Socket: f.containerd, Namespace: f.namespace, InitBinary: initBin},
		Log:                log,
	}
	if err := f.agentFlags.Apply(&cfg.AgentConfig); err != nil {
		return err
	}
	if f.debugAddr != "" {
		if err := serveDebug(f.debugAddr); err != nil {
			return err
		}
	}
	d, err := emberd.New(ctx, cfg)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// kafkaConn builds the TLS and SASL settings to the brokers from the flags.
// The SASL password never appears on the command line.
func kafkaConn(f flags) (consumers.Conn, error) {
	var c consumers.Conn
	if f.kafkaTLS || f.kafkaCA != "" {
		c.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if f.kafkaCA != "" {
			pem, err := os.ReadFile(f.kafkaCA)
			if err != nil {
				return c, fmt.Errorf("--kafka-ca: %w", err)
			}
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				return c, fmt.Errorf("--kafka-ca %s: no PEM certificate in it", f.kafkaCA)
			}
			c.TLS.RootCAs = roots
		}
	}
	if f.kafkaSASL == "" {
		if f.kafkaUser != "" {
			return c, errors.New("--kafka-user needs --kafka-sasl")
		}
		return c, nil
	}
	pass := os.Getenv("EMBER_KAFKA_PASSWORD")
	if f.kafkaPassFile != "" {
		b, err := os.ReadFile(f.kafkaPassFile)
		if err != nil {
			return c, fmt.Errorf("--kafka-password-file: %w", err)
		}
		pass = strings.TrimRight(string(b), "\r\n")
	}
	if f.kafkaUser == "" || pass == "" {
		return c, errors.New("--kafka-sasl needs --kafka-user and a password (EMBER_KAFKA_PASSWORD or --kafka-password-file)")
	}
	mech, err := consumers.NewSASL(f.kafkaSASL, f.kafkaUser, pass)
	if err != nil {
		return c, err
	}
	c.SASL = mech
	return c, nil
}
