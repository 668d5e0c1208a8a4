package logship

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	collogs "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	"google.golang.org/protobuf/proto"
)

// Config describes one logging service and how records reach it.
type Config struct {
	// Endpoint is the URL records are POSTed to (http or https).
	Endpoint string
	// Authorization is the Authorization header's value: the service's
	// credentials. It goes on the wire and nowhere else.
	Authorization string
	// Dial opens connections to the endpoint (addr is its host:port).
	// Default: a plain TCP dial.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// RootCAs verify an https endpoint. Default: the system's.
	RootCAs *x509.CertPool
	// MaxRecords and MaxBytes bound the buffer. Defaults: 4096, 4 MiB.
	MaxRecords int
	MaxBytes   int
	// MaxBatch bounds one export. Default: 512.
	MaxBatch int
	// Linger is how long a record may wait for others before its batch is
	// sent. Default: 1s, as OpenTelemetry's batch processors: one export a
	// second at most while under MaxBatch keeps the exports' cost (here and
	// at the service) off the invocations (BenchmarkHotInvokeLogging: 100
	// ms cost 4-13% of a hot invoke, 1 s 0-6% with a 3-4% floor).
	Linger time.Duration
	// Timeout bounds one export. Default: 5s.
	Timeout time.Duration
	// MaxAttempts bounds the exports of one batch (the first included).
	// Default: 3.
	MaxAttempts int
}

func (c *Config) setDefaults() {
	if c.MaxRecords == 0 {
		c.MaxRecords = 4096
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 4 << 20
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 512
	}
	if c.Linger == 0 {
		c.Linger = 1000 * time.Millisecond
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
}

// Stats are a Shipper's counts of records since it started.
type Stats struct {
	// Sent: accepted by the service.
	Sent int64
	// Dropped: not buffered (the buffer was full, or the shipper closed).
	Dropped int64
	// Failed: buffered, then given up on (the service refused them or
	// stayed unreachable), or rejected by the service as a partial success.
	Failed int64
	// LastError is the most recent export failure ("" if none).
	LastError string
}

// Shipper sends records to one logging service. Its methods are safe for
// concurrent use.
type Shipper struct {
	cfg    Config
	client *http.Client

	mu      sync.Mutex
	queue   []entry
	bytes   int
	closed  bool
	wake    chan struct{} // a record arrived (capacity 1)
	lastErr string

	sent, dropped, failed atomic.Int64
	done                  chan struct{} // closed when the sender has exited
	stop                  chan struct{} // closed by Close: flush and exit
	ctx                   context.Context
	cancel                context.CancelFunc // cuts the exports of a Close past its deadline
}

type entry struct {
	res *Resource
	rec Record
}

// New checks cfg and starts a Shipper's sender.
func New(cfg Config) (*Shipper, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("logship: endpoint %q: want an http or https URL without credentials", cfg.Endpoint)
	}
	cfg.setDefaults()
	tr := &http.Transport{
		DialContext:         cfg.Dial,
		TLSClientConfig:     &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		ForceAttemptHTTP2:   false,
	}
	if tr.DialContext == nil {
		tr.DialContext = (&net.Dialer{Timeout: cfg.Timeout}).DialContext
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Shipper{
		ctx: ctx, cancel: cancel,
		cfg:    cfg,
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout},
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		stop:   make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// Add buffers r (from res, which must not change afterwards) for sending.
// It never blocks; it reports false, and counts a drop, when the buffer is
// full or the shipper is closed.
func (s *Shipper) Add(res *Resource, r Record) bool {
	size := len(r.Body) + 64
	s.mu.Lock()
	if s.closed || len(s.queue) >= s.cfg.MaxRecords || s.bytes+size > s.cfg.MaxBytes {
		s.mu.Unlock()
		s.dropped.Add(1)
		return false
	}
	s.queue = append(s.queue, entry{res, r})
	s.bytes += size
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// Stats reports the shipper's counts.
func (s *Shipper) Stats() Stats {
	s.mu.Lock()
	last := s.lastErr
	s.mu.Unlock()
	return Stats{Sent: s.sent.Load(), Dropped: s.dropped.Load(), Failed: s.failed.Load(), LastError: last}
}

// Close stops taking records and sends what is buffered until ctx is done
// (what is left then counts as failed). It returns once the sender exited.
func (s *Shipper) Close(ctx context.Context) {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.cancel()
		<-s.done
	}
}

// run sends batches until Close, then flushes.
func (s *Shipper) run() {
	defer close(s.done)
	defer s.client.CloseIdleConnections()
	defer s.cancel()
	ctx := s.ctx
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		select {
		case <-s.wake:
		case <-s.stop:
		}
		stopping := isClosed(s.stop)
		// Wait for a full batch, at most Linger (not when stopping).
		if !stopping && s.pending() < s.cfg.MaxBatch {
			linger.Reset(s.cfg.Linger)
		wait:
			for s.pending() < s.cfg.MaxBatch {
				select {
				case <-s.wake:
				case <-linger.C:
					break wait
				case <-s.stop:
					break wait
				}
			}
			linger.Stop()
		}
		for {
			batch := s.take()
			if len(batch) == 0 {
				break
			}
			s.send(ctx, batch)
			if !isClosed(s.stop) && len(batch) < s.cfg.MaxBatch {
				break
			}
		}
		if isClosed(s.stop) && s.pending() == 0 {
			return
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (s *Shipper) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// take removes up to MaxBatch records from the buffer.
func (s *Shipper) take() []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(s.queue), s.cfg.MaxBatch)
	batch := make([]entry, n)
	copy(batch, s.queue)
	s.queue = append(s.queue[:0], s.queue[n:]...)
	for _, e := range batch {
		s.bytes -= len(e.rec.Body) + 64
	}
	return batch
}

// send exports batch, retrying what may succeed later with backoff.
func (s *Shipper) send(ctx context.Context, batch []entry) {
	body, err := proto.Marshal(encode(batch))
	if err != nil { // cannot happen with well-formed UTF-8 checked by encode
		s.fail(int64(len(batch)), fmt.Errorf("encode: %w", err))
		return
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rejected, retry, err := s.export(ctx, body)
		if err == nil {
			s.sent.Add(int64(len(batch)) - rejected)
			if rejected > 0 {
				s.fail(rejected, fmt.Errorf("the service rejected %d records", rejected))
			}
			return
		}
		if !retry || attempt >= s.cfg.MaxAttempts || ctx.Err() != nil {
			s.fail(int64(len(batch)), err)
			return
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff *= 4
	}
}

func (s *Shipper) fail(n int64, err error) {
	s.failed.Add(n)
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// errStatus is an export answered with a status that is not success.
type errStatus struct {
	code int
	msg  string
}

func (e *errStatus) Error() string {
	return fmt.Sprintf("logging service answered %d: %s", e.code, e.msg)
}

// export POSTs one request. retry reports a failure that may pass later.
func (s *Shipper) export(ctx context.Context, body []byte) (rejected int64, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.Endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if s.cfg.Authorization != "" {
		req.Header.Set("Authorization", s.cfg.Authorization)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is known; keep the cause
		}
		return 0, true, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		msg := string(bytes.TrimSpace(b))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		switch resp.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return 0, true, &errStatus{resp.StatusCode, msg}
		}
		return 0, false, &errStatus{resp.StatusCode, msg}
	}
	var out collogs.ExportLogsServiceResponse
	if resp.Header.Get("Content-Type") == "application/x-protobuf" && proto.Unmarshal(b, &out) == nil {
		rejected = out.GetPartialSuccess().GetRejectedLogRecords()
	}
	return rejected, false, nil
}
