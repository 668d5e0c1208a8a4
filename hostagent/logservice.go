package hostagent

import (
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/logrelay"
	"github.com/ember-run/ember/hostagent/logship"
)

// Logging services: an instance is configured for at most one logging
// service at a time. The first dispatch that names a service the instance
// is not configured for opens the instance's relay socket (its only way
// out) for that service's endpoint and sends ember-init a LogConfig with
// the credentials; later dispatches naming it only tag their Invoke. The
// credentials appear in no log line, no error and no process argument.

// configureLogs makes ls the instance's logging service and returns its
// id, or "" when the invocation runs without one (none asked, or the
// configuration failed: logging never fails an invocation). Caller holds
// in.op.
func (a *Agent) configureLogs(ctx context.Context, log zerolog.Logger, in *instance, client *initClient, tenant string, ls *dispatchpb.LogService) string {
	if ls == nil || ls.GetId() == "" {
		return ""
	}
	if in.logService == ls.GetId() {
		return in.logService
	}
	fail := func(what string, err error) string {
		log.Warn().Err(err).Str("log_service", ls.GetId()).Msg(what)
		a.countLogs(in, tenant, initproto.LogStats{}, "unconfigured")
		return ""
	}
	a.mu.Lock()
	relay := in.relay
	// Another invocation runs with the current service: it is not switched
	// under it (claims beside one need the same service; this one runs
	// without shipping).
	busy := (in.running > 1 || len(in.parked) > 0) && in.logService != ""
	a.mu.Unlock()
	if busy {
		return fail("logging service: another invocation on the instance uses another one", errors.New("instance busy"))
	}
	if relay == nil {
		var err error
		relay, err = logrelay.Listen(filepath.Join(in.sockDir(), initproto.RelayName), in.hostUID,
			logrelay.Policy{Allow: a.cfg.LogAllow}, log.With().Str("component", "logrelay").Logger())
		if err != nil {
			return fail("logging service: cannot open the instance's relay", err)
		}
		a.mu.Lock()
		if in.state == stGone {
			a.mu.Unlock()
			relay.Close()
			return ""
		}
		in.relay = relay
		a.mu.Unlock()
	}
	if err := relay.Allow(ls.GetId(), ls.GetEndpoint()); err != nil {
		return fail("logging service: bad endpoint", err)
	}
	cfg := initproto.LogConfig{ID: ls.GetId(), Endpoint: ls.GetEndpoint(), Authorization: ls.GetAuthorization(),
		Tenant: tenant, Instance: in.id}
	if u, err := url.Parse(ls.GetEndpoint()); err == nil && u.Scheme == "https" {
		cfg.RootCAsPEM = hostRoots()
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.configureLogs(cctx, cfg); err != nil {
		// ember-init may have taken it after all: no service is known
		// until the next configuration says which.
		a.mu.Lock()
		in.logService = ""
		a.mu.Unlock()
		return fail("logging service: ember-init did not take the configuration", err)
	}
	a.mu.Lock()
	in.logService, in.logStats = ls.GetId(), initproto.LogStats{ID: ls.GetId()}
	a.mu.Unlock()
	log.Info().Str("log_service", ls.GetId()).Msg("instance configured for a logging service")
	return in.logService
}

// countLogs adds what ember-init reported since the last report to the
// per-tenant counters; outcome, when set, counts one invocation whose
// logging service could not be configured.
func (a *Agent) countLogs(in *instance, tenant string, st initproto.LogStats, outcome string) {
	m := a.usageMetrics
	if m == nil {
		return
	}
	if outcome != "" {
		m.logRecords.With(prometheus.Labels{"tenant": tenant, "outcome": outcome}).Inc()
		return
	}
	a.mu.Lock()
	prev := in.logStats
	current := st.ID == prev.ID
	if current { // counts only grow: a report overtaken by a newer one adds nothing
		st.Sent, st.Dropped, st.Failed = max(st.Sent, prev.Sent), max(st.Dropped, prev.Dropped), max(st.Failed, prev.Failed)
		in.logStats = st
	}
	a.mu.Unlock()
	if !current {
		return // a report about a service the instance no longer uses
	}
	add := func(outcome string, d int64) {
		if d > 0 {
			m.logRecords.WithLabelValues(tenant, outcome).Add(float64(d))
		}
	}
	add("sent", st.Sent-prev.Sent)
	add("dropped", st.Dropped-prev.Dropped)
	add("failed", st.Failed-prev.Failed)
}

var (
	rootsOnce sync.Once
	rootsPEM  []byte
)

// hostRoots is the host's trust store, for an https logging service (an
// instance has none of its own).
func hostRoots() []byte {
	rootsOnce.Do(func() {
		for _, p := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"} {
			if b, err := os.ReadFile(p); err == nil {
				rootsPEM = b
				return
			}
		}
	})
	return rootsPEM
}

// reportFigures are an invocation's REPORT figures for its logging service.
func reportFigures(status string, errType string, duration time.Duration, billed, memoryMB int64, initNs int64, u *Usage) logship.Report {
	r := logship.Report{DurationMs: float64(duration) / float64(time.Millisecond), BilledDurationMs: billed,
		MemorySizeMB: memoryMB, InitDurationMs: float64(initNs) / 1e6, Status: status, ErrorType: errType}
	if u != nil {
		r.MaxMemoryUsedMB = u.peakMB()
		r.CPUMs = float64(u.CPU) / float64(time.Millisecond)
	}
	return r
}

// shipReport sends the invocation's REPORT to ember-init for its logging
// service and counts what ember-init reported of its records.
func (a *Agent) shipReport(log zerolog.Logger, in *instance, client *initClient, req *dispatchpb.DispatchRequest, c *container,
	logID, line string, res initproto.Result, initNs int64, u *Usage) {
	duration := time.Duration(res.DurationNs)
	r := initproto.Report{ContainerID: c.id, InvocationID: req.GetInvocationId(), LogService: logID, Line: line,
		Report: reportFigures(res.Status, res.ErrorType, duration, billedMs(duration), c.memoryMB, initNs, u)}
	if err := client.report(r); err != nil {
		log.Debug().Err(err).Msg("report for the logging service lost with the init connection")
	}
	if res.LogStats != nil {
		a.countLogs(in, req.GetTenant(), *res.LogStats, "")
	}
}
