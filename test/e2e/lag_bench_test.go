package e2e

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// BenchmarkLagTrackingOverhead: what watching lag costs the hot path. The
// same workload as BenchmarkAccountingOverhead on two fresh stacks: one
// that nobody watches (the lag monitor at its default 5 s), one sampled
// every second with the dashboard open (its requests every 2 s) and
// /metrics scraped every second. The stacks run in the order unwatched,
// watched, watched, unwatched (the first stack of a run is the slowest
// here) and each figure is the mean of its two. Ratios near 1 mean
// watching is cheap.
func BenchmarkLagTrackingOverhead(b *testing.B) {
	measure := func(watched bool) (rate, p50 float64) {
		extra := []string{"--max-instances", "8"}
		if watched {
			extra = append(extra, "--lag-interval", "1s")
		}
		s := newStack(b, "m1024=4", extra...)
		defer s.stop()
		if watched {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go s.watch(ctx, []string{"dash-lat", "dash-tput"})
		}
		return warmFigures(b, s, "dash")
	}
	var quietRate, quietP50, rate, p50 float64
	for _, watched := range []bool{false, true, true, false} {
		r, l := measure(watched)
		if watched {
			rate, p50 = rate+r/2, p50+l/2
		} else {
			quietRate, quietP50 = quietRate+r/2, quietP50+l/2
		}
	}
	report(b, "unwatched: invocations/s (batch 1)", quietRate, "inv/s-quiet")
	report(b, "dashboard + 1 s scrapes: invocations/s (batch 1)", rate, "inv/s-watched")
	report(b, "throughput ratio watched / unwatched", rate/quietRate, "x-throughput")
	report(b, "unwatched: event-to-start p50 (200 ev/s)", quietP50, "ms-quiet")
	report(b, "dashboard + 1 s scrapes: event-to-start p50 (200 ev/s)", p50, "ms-watched")
	report(b, "latency ratio watched / unwatched", p50/quietP50, "x-latency")
}

// watch does what an open dashboard and a Prometheus do until ctx ends:
// every 2 s the page's requests (status, then each binding's lag history
// and dead letters), every second a scrape of /metrics.
func (s *stack) watch(ctx context.Context, bindings []string) {
	get := func(path, key string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.api+path, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	scrape := time.NewTicker(time.Second)
	defer scrape.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-scrape.C:
		}
		get("/metrics", s.adminKey)
		if i%2 == 0 {
			get("/v1/status", s.tenantKey)
			for _, id := range bindings {
				get("/v1/bindings/"+url.PathEscape(id)+"/lag?since=1h", s.tenantKey)
				get("/v1/bindings/"+url.PathEscape(id)+"/dlq?limit=10", s.tenantKey)
			}
		}
	}
}
