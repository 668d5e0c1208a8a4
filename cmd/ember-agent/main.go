// Command ember-agent is Ember's host agent: it keeps a warming pool of
// instances in containerd, registers them in Redis and serves Dispatch to
// the engine's schedulers. See package hostagent.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ember-run/ember/hostagent"
	"github.com/ember-run/ember/hostagent/codefetch"
	"github.com/ember-run/ember/internal/agentflags"
	"github.com/ember-run/ember/internal/logging"
	"github.com/ember-run/ember/internal/pki"
	"github.com/ember-run/ember/internal/redisconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

type flags struct {
	redis, containerd, namespace string
	agentID, listen, advertise   string
	stateDir, initBinary         string
	codeDir, codeURL             string
	logFormat, logLevel          string
	metricsAddr                  string
	pkiDir, redisCA              string
	agentFlags                   agentflags.Flags
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func main() {
	if hostagent.IsKeeper() { // a CRIU restore keeper (hostagent/keeper.go)
		hostagent.RunKeeper()
	}
	var f flags
	cmd := &cobra.Command{
		Use:           "ember-agent",
		Short:         "Ember host agent: warm instances in containerd, dispatch over gRPC",
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return run(ctx, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.redis, "redis", envOr("EMBER_REDIS", "127.0.0.1:6390"), "Redis host:port, a redis:// or rediss:// (TLS) URL, or redis-sentinel://host:port,.../MASTER (env EMBER_REDIS)")
	fl.StringVar(&f.redisCA, "redis-ca", envOr("EMBER_REDIS_CA", ""), "CA file for a rediss:// server (env EMBER_REDIS_CA)")
	fl.StringVar(&f.containerd, "containerd", envOr("EMBER_CONTAINERD", "/run/ember/containerd.sock"), "containerd socket (env EMBER_CONTAINERD)")
	fl.StringVar(&f.namespace, "namespace", "ember", "containerd namespace")
	fl.StringVar(&f.agentID, "agent-id", "", "agent id in Redis (default: the host name)")
	fl.StringVar(&f.listen, "listen", hostagent.DefaultListenAddr, "gRPC dispatch listen address")
	fl.StringVar(&f.advertise, "advertise", "", "address schedulers dial (default: the listen address)")
	fl.StringVar(&f.stateDir, "state-dir", envOr("EMBER_AGENT_STATE", hostagent.DefaultStateDir), "per-instance state directory (env EMBER_AGENT_STATE)")
	fl.StringVar(&f.initBinary, "init-binary", "", "static ember-init binary; the instance image also takes the ember-shim beside it, if any (default: ember-init next to this executable)")
	fl.StringVar(&f.codeDir, "code-dir", envOr("EMBER_CODE_DIR", ""), "engine code store on this machine (<dir>/sha256/<hex>.zip) (env EMBER_CODE_DIR)")
	fl.StringVar(&f.codeURL, "code-url", envOr("EMBER_CODE_URL", ""), "emberd peer URL to fetch code from over mutual TLS, e.g. https://emberd-host:7948 (env EMBER_CODE_URL)")
	fl.StringVar(&f.pkiDir, "pki-dir", envOr("EMBER_PKI_DIR", "/etc/ember/pki"), "ca.crt and this agent's <agent-id>.crt/.key, from 'emberd pki issue agent <agent-id>' (env EMBER_PKI_DIR)")
	f.agentFlags.Register(fl)
	fl.StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:9947", "serve Prometheus metrics (usage per tenant and function) here; empty: off; off loopback it needs EMBER_METRICS_TOKEN")
	fl.StringVar(&f.logFormat, "log-format", "auto", "auto|json|console")
	fl.StringVar(&f.logLevel, "log-level", "info", "debug|info|warn|error")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "ember-agent:", err)
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
	if f.agentID == "" {
		if f.agentID, err = os.Hostname(); err != nil {
			return fmt.Errorf("--agent-id: %w", err)
		}
	}
	cert, roots, err := pki.InDir(f.pkiDir, f.agentID).Load()
	if err != nil {
		return fmt.Errorf("agent identity (--pki-dir): %w", err)
	}
	var code codefetch.Source
	switch {
	case f.codeDir != "" && f.codeURL != "":
		return errors.New("give --code-dir or --code-url, not both")
	case f.codeDir != "":
		code = codefetch.Dir{Root: f.codeDir}
	case f.codeURL != "":
		if !strings.HasPrefix(f.codeURL, "https://") {
			return fmt.Errorf("--code-url %q: code is fetched over mutual TLS only (https://)", f.codeURL)
		}
		code = codefetch.HTTP{BaseURL: f.codeURL, Client: &http.Client{Transport: &http.Transport{
			TLSClientConfig: pki.ClientConfig(cert, roots, pki.RoleEmberd, ""),
		}}}
	default:
		return errors.New("--code-dir or --code-url is required")
	}
	initBin, err := hostagent.InitBinary(f.initBinary)
	if err != nil {
		return err
	}
	cfg := hostagent.Config{AgentID: f.agentID, ListenAddr: f.listen, AdvertiseAddr: f.advertise, StateDir: stateDir}
	if err := f.agentFlags.Apply(&cfg); err != nil {
		return err
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	rdb, err := redisconn.Client(f.redis, f.redisCA)
	if err != nil {
		return err
	}
	defer rdb.Close()
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = rdb.Ping(pingCtx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("redis %s: %w", redisconn.Redacted(f.redis), err)
	}

	agent, closeAgent, err := hostagent.NewContainerd(ctx, cfg,
		hostagent.ContainerdSetup{Socket: f.containerd, Namespace: f.namespace, InitBinary: initBin},
		hostagent.Deps{Redis: rdb, Code: code, Log: log, Metrics: reg, TLS: pki.ServerConfig(cert, roots, pki.RoleEmberd)})
	if err != nil {
		return err
	}
	defer closeAgent()
	if f.metricsAddr != "" {
		token := os.Getenv("EMBER_METRICS_TOKEN")
		host, _, _ := net.SplitHostPort(f.metricsAddr)
		if ip := net.ParseIP(host); token == "" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("--metrics-addr %s is not a loopback address: set EMBER_METRICS_TOKEN, the bearer token scrapers must send", f.metricsAddr)
		}
		l, err := net.Listen("tcp", f.metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		var h http.Handler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
		if token != "" {
			h = requireBearer(token, h)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(l) }() // ends when Close below closes the listener
		defer srv.Close()
	}
	go func() { // ends with Run: Ready is closed or ctx is done
		select {
		case <-agent.Ready():
			log.Info().Str("addr", agent.Addr()).Msg("ember-agent ready")
		case <-ctx.Done():
		}
	}()
	return agent.Run(ctx)
}

// requireBearer serves next only to requests carrying "Authorization:
// Bearer <token>".
func requireBearer(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ember-agent"`)
			http.Error(w, "metrics need the scrape token", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
