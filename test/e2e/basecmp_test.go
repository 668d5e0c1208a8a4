package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/testenv"
)

// BenchmarkVsBase measures what tenants, authentication and isolation cost
// on the warm path: the same function and load on the previous main
// (binaries in $EMBER_BASE_BIN, which make bench builds from
// $EMBER_BASE_REF) and on this tree, alternating twice, best of each:
// the hot invoke through the API (median of 1,000) and event-to-start at
// 200 events/s (batch 1, p50 and p99 over 4,096 events: the activity
// window, so the warm-up's container starts are not in it).
func BenchmarkVsBase(b *testing.B) {
	base := os.Getenv("EMBER_BASE_BIN")
	if base == "" {
		b.Skip("EMBER_BASE_BIN is not set: make bench builds the previous main and sets it")
	}
	type figures struct{ hot, p50, p99 float64 }
	best := map[string]*figures{}
	keep := func(side string, f figures) {
		if best[side] == nil {
			best[side] = &f
			return
		}
		g := best[side]
		g.hot, g.p50, g.p99 = min(g.hot, f.hot), min(g.p50, f.p50), min(g.p99, f.p99)
	}
	for round := 0; round < 2; round++ {
		ls := legacyStack(b, base, round)
		keep("base", measureSide(b, ls))
		ls.stop()
		s := newStack(b, "m1024=2", "--max-instances", "4")
		keep("current", measureSide(b, currentSide{s}))
		s.stop()
	}
	bs, cs := best["base"], best["current"]
	report(b, "previous main: hot invoke via API, median of 1,000", bs.hot, "ms-hot-base")
	report(b, "this tree: hot invoke via API, median of 1,000", cs.hot, "ms-hot")
	report(b, "ratio this/previous: hot invoke", cs.hot/bs.hot, "x-hot")
	report(b, "previous main: event-to-start p50 at 200 ev/s", bs.p50, "ms-p50-base")
	report(b, "previous main: event-to-start p99 at 200 ev/s", bs.p99, "ms-p99-base")
	report(b, "this tree: event-to-start p50 at 200 ev/s", cs.p50, "ms-p50")
	report(b, "this tree: event-to-start p99 at 200 ev/s", cs.p99, "ms-p99")
	report(b, "ratio this/previous: event-to-start p50", cs.p50/bs.p50, "x-p50")
	report(b, "ratio this/previous: event-to-start p99", cs.p99/bs.p99, "x-p99")
}

// side is one Ember under measurement.
type side interface {
	// do sends an API request (with whatever identifies the caller).
	do(method, path, contentType string, body io.Reader) (*http.Response, error)
	// topic creates a topic of 4 partitions and returns its Kafka name.
	topic(name string) string
	broker() string
}

func measureSide(b *testing.B, sd side) (f struct{ hot, p50, p99 float64 }) {
	b.Helper()
	zip, err := os.ReadFile(zips["kafka-echo"])
	if err != nil {
		b.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	cw, _ := mw.CreateFormField("config")
	_, _ = cw.Write([]byte(`{"memory_mb":1024,"timeout_ms":10000}`))
	fw, _ := mw.CreateFormFile("code", "f.zip")
	_, _ = fw.Write(zip)
	_ = mw.Close()
	mustOK(b, func() (*http.Response, error) {
		return sd.do("PUT", "/v1/functions/echo", mw.FormDataContentType(), &body)
	})
	var hot []time.Duration
	for i := 0; i < 1020; i++ {
		t0 := time.Now()
		mustOK(b, func() (*http.Response, error) {
			return sd.do("POST", "/v1/functions/echo/invoke", "application/json", bytes.NewReader([]byte(`{"records":{}}`)))
		})
		if i >= 20 { // the first ones start the container
			hot = append(hot, time.Since(t0))
		}
	}
	f.hot = ms(median(hot))

	topic := sd.topic("lat")
	bind, _ := json.Marshal(wire.Binding{Function: "echo", Topic: topic, BatchSize: 1, StartingPosition: "earliest"})
	mustOK(b, func() (*http.Response, error) {
		return sd.do("PUT", "/v1/bindings/lat", "application/json", bytes.NewReader(bind))
	})
	pacedTo(b, sd.broker(), topic, 400, 200) // warm-up: containers started, connections open
	waitActivity(b, sd, 400)
	pacedTo(b, sd.broker(), topic, 4096, 200)
	a := waitActivity(b, sd, 400+4096)
	if a.Window != 4096 {
		b.Fatalf("the activity window holds %d invocations, want the measured 4,096", a.Window)
	}
	f.p50, f.p99 = a.EventToStartP50Ms, a.EventToStartP99Ms
	return f
}

func mustOK(b *testing.B, call func() (*http.Response, error)) {
	b.Helper()
	resp, err := call()
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(resp.Body)
		b.Fatalf("API answered %s: %s", resp.Status, msg)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
}

// waitActivity waits until binding "lat" handled n records and returns its
// activity.
func waitActivity(b *testing.B, sd side, n int64) wire.Activity {
	b.Helper()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		resp, err := sd.do("GET", "/v1/status", "", nil)
		if err == nil {
			var st wire.Status
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			for _, x := range st.Bindings {
				if x.ID == "lat" && x.Activity != nil && x.Activity.Records >= n {
					return *x.Activity
				}
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("binding lat did not reach %d records", n)
		}
		time.Sleep(50 * time.Millisecond) // polling progress
	}
}

// currentSide is this tree's emberd, as tenant e2e.
type currentSide struct{ s *stack }

func (c currentSide) do(method, path, ct string, body io.Reader) (*http.Response, error) {
	return apiRequest(c.s.api, method, path, ct, body, "Authorization", "Bearer "+c.s.tenantKey)
}

// apiRequest sends one API request with the header that identifies the
// caller.
func apiRequest(addr, method, path, ct string, body io.Reader, header, value string) (*http.Response, error) {
	req, err := http.NewRequest(method, "http://"+addr+path, body)
	if err != nil {
		return nil, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set(header, value)
	return http.DefaultClient.Do(req)
}
func (c currentSide) topic(name string) string { c.s.createTopic(name, 4); return topic(name) }
func (c currentSide) broker() string           { return c.s.broker }

// legacySide is the previous main's emberd: tenants by header, no keys.
type legacySide struct{ s *stack }

func legacyStack(b *testing.B, binDir string, round int) legacySide {
	b.Helper()
	dir, err := os.MkdirTemp("", "ember-base-")
	if err != nil {
		b.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	b.Cleanup(func() { _ = os.RemoveAll(dir) })
	rs := testenv.StartRedis(b, false)
	s := &stack{t: b, dir: dir, redis: rs.Addr, api: freeAddr(b), broker: freeAddr(b), agent: freeAddr(b)}
	logf, err := os.Create(filepath.Join(dir, "emberd-0.log"))
	if err != nil {
		b.Fatal(err)
	}
	s.restarts = 1
	s.cmd = exec.Command(filepath.Join(binDir, "emberd"), "--state-dir", dir, "--redis", s.redis, "--listen", s.api,
		"--embedded-broker", s.broker, "--containerd", ctrd.Address, "--namespace", ctrd.Namespace,
		"--init-binary", filepath.Join(binDir, "ember-init"), "--agent-id", fmt.Sprintf("base%d", round), "--agent-listen", s.agent,
		// No --keep-instances: that main has no such flag (it destroys
		// its instances at every stop).
		"--pool", "m1024=2", "--max-instances", "4", "--session-timeout", "6s", "--log-format", "json", "--log-level", "info")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait(); logf.Close() }()
	ls := legacySide{s}
	b.Cleanup(ls.stop)
	for deadline := time.Now().Add(90 * time.Second); ; {
		resp, err := ls.do("GET", "/v1/status", "", nil)
		if err == nil {
			var st wire.Status
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if len(st.Agents) > 0 && warm(st) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("previous main's emberd not ready\n%s", s.log())
		}
		time.Sleep(50 * time.Millisecond) // polling a starting daemon
	}
	return ls
}

// stop ends the previous main's emberd (idempotent).
func (l legacySide) stop() {
	if l.s.cmd == nil {
		return
	}
	_ = l.s.cmd.Process.Signal(syscall.SIGTERM)
	<-l.s.exited
	l.s.cmd = nil
}

func (l legacySide) do(method, path, ct string, body io.Reader) (*http.Response, error) {
	return apiRequest(l.s.api, method, path, ct, body, "X-Ember-Tenant", tenant)
}
func (l legacySide) topic(name string) string {
	l.s.t.Helper()
	createKafkaTopic(l.s.t, l.s.broker, name, 4)
	return name
}
func (l legacySide) broker() string { return l.s.broker }
