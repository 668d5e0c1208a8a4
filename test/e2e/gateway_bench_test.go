package e2e

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
)

// BenchmarkRouteVsInvoke: a hot HTTP request through a route against a hot
// synchronous invoke of the same function with the same 2.0 event (median
// of 300 sequential calls each, interleaved), then requests/s through the
// route with 64 concurrent connections, measured by wrk (Debian's; make
// bench installs it) for 10 s.
func BenchmarkRouteVsInvoke(b *testing.B) {
	s := newStack(b, "m1024=4", "--max-instances", "8")
	s.deploy("web", "http-echo", wire.FunctionConfig{MemoryMB: 1024, TimeoutMs: 10000})
	if _, err := s.client.PutRoute(s.ctx(), wire.Route{Method: "GET", Path: "/hello/{name}", Function: "web", Public: true}); err != nil {
		b.Fatal(err)
	}
	url := "http://" + s.gateway + "/" + tenant + "/hello/bench"
	get := func() time.Duration {
		t0 := time.Now()
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("route: %d", resp.StatusCode)
		}
		return time.Since(t0)
	}
	event := []byte(`{"version":"2.0","routeKey":"GET /hello/{name}","rawPath":"/hello/bench","pathParameters":{"name":"bench"},"requestContext":{"http":{"method":"GET","path":"/hello/bench"}}}`)
	invoke := func() time.Duration {
		t0 := time.Now()
		res, err := s.client.Invoke(s.ctx(), "web", "", event)
		if err != nil || res.Status != "ok" {
			b.Fatalf("invoke: %+v %v", res, err)
		}
		return time.Since(t0)
	}
	for range 50 { // warm-up: hot containers, open connections
		get()
		invoke()
	}
	var viaRoute, viaInvoke []time.Duration
	for range 300 {
		viaRoute = append(viaRoute, get())
		viaInvoke = append(viaInvoke, invoke())
	}
	r, i := median(viaRoute), median(viaInvoke)
	report(b, "hot HTTP request through a route p50", ms(r), "ms-route")
	report(b, "hot synchronous invoke p50", ms(i), "ms-invoke")
	report(b, "route / invoke", ms(r)/ms(i), "x-route")

	out, err := exec.Command("wrk", "-t2", "-c64", "-d10s", "--latency", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk (make bench installs it): %v\n%s", err, out)
	}
	rps, p50 := wrkFigures(out)
	if rps == 0 {
		b.Fatalf("wrk output:\n%s", out)
	}
	if bytes.Contains(out, []byte("Non-2xx")) {
		b.Fatalf("wrk saw errors:\n%s", out)
	}
	report(b, "route requests/s, 64 connections (wrk)", rps, "req/s-64c")
	report(b, "route latency p50 under that load (wrk)", p50, "ms-p50-64c")
}

// wrkFigures reads Requests/sec and the 50% latency (ms) from wrk's output.
func wrkFigures(out []byte) (rps, p50ms float64) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			rps, _ = strconv.ParseFloat(f[1], 64)
		case len(f) == 2 && f[0] == "50%":
			if d, err := time.ParseDuration(f[1]); err == nil {
				p50ms = float64(d) / float64(time.Millisecond)
			}
		}
	}
	return rps, p50ms
}
