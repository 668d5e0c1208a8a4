package initd

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"path/filepath"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/logship"
)

// logService is the instance's logging service: a shipper whose
// connections go through the agent's relay.
type logService struct {
	id               string
	tenant, instance string
	ship             *logship.Shipper
}

// logFlushTimeout bounds how long a replaced service's buffered records
// may take to leave.
const logFlushTimeout = 10 * time.Second

// handleLogConfig makes the service in f the instance's. The credentials
// stay in this process's memory; nothing logs them.
func (s *Server) handleLogConfig(f *initproto.Frame) initproto.LogConfigured {
	closeAll(f.FDs)
	var req initproto.LogConfig
	if err := f.Decode(&req); err != nil {
		return initproto.LogConfigured{Error: err.Error()}
	}
	out := initproto.LogConfigured{ID: req.ID}
	if req.ID == "" {
		out.Error = "log config without an id"
		return out
	}
	s.logMu.Lock()
	cur := s.logSvc
	s.logMu.Unlock()
	if cur != nil && cur.id == req.ID {
		return out
	}
	var roots *x509.CertPool
	if len(req.RootCAsPEM) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(req.RootCAsPEM) {
			out.Error = "log config: no certificate in root_cas_pem"
			return out
		}
	}
	ship, err := logship.New(logship.Config{
		Endpoint: req.Endpoint, Authorization: req.Authorization, RootCAs: roots,
		Dial: relayDialer(filepath.Join(s.cfg.SocketDir, initproto.RelayName), req.ID),
	})
	if err != nil {
		out.Error = err.Error()
		return out
	}
	svc := &logService{id: req.ID, tenant: req.Tenant, instance: req.Instance, ship: ship}
	s.logMu.Lock()
	old := s.logSvc
	s.logSvc = svc
	s.logMu.Unlock()
	s.log.Info().Str("log_service", req.ID).Msg("logging service configured")
	if old != nil {
		s.wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), logFlushTimeout)
			defer cancel()
			old.ship.Close(ctx)
		})
	}
	return out
}

// logServiceFor returns the configured service when id names it.
func (s *Server) logServiceFor(id string) *logService {
	if id == "" {
		return nil
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.logSvc == nil || s.logSvc.id != id {
		return nil
	}
	return s.logSvc
}

// handleReport ships an invocation's REPORT to the service it ran with.
func (s *Server) handleReport(f *initproto.Frame) {
	closeAll(f.FDs)
	var r initproto.Report
	if err := f.Decode(&r); err != nil {
		s.log.Warn().Err(err).Msg("malformed report")
		return
	}
	svc := s.logServiceFor(r.LogService)
	s.mu.Lock()
	c := s.containers[r.ContainerID]
	s.mu.Unlock()
	if svc == nil || c == nil {
		return
	}
	rep := r.Report
	svc.ship.Add(c.logResource(svc), logship.Record{Time: time.Now(), Body: r.Line, InvocationID: r.InvocationID, Report: &rep})
}

// stats are the service's counts for a Result.
func (svc *logService) stats() *initproto.LogStats {
	st := svc.ship.Stats()
	return &initproto.LogStats{ID: svc.id, Sent: st.Sent, Dropped: st.Dropped, Failed: st.Failed}
}

// closeLogService flushes the service's records at shutdown, within ctx.
func (s *Server) closeLogService(ctx context.Context) {
	s.logMu.Lock()
	svc := s.logSvc
	s.logSvc = nil
	s.logMu.Unlock()
	if svc != nil {
		svc.ship.Close(ctx)
	}
}

// relayDialer connects through the agent's relay socket, announcing the
// service the connection is for.
func relayDialer(path, id string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, errors.New("the host's relay is not reachable: " + err.Error())
		}
		if _, err := io.WriteString(c, id+"\n"); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
}
