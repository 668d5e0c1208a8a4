package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/testenv"
)

// invokeLogged invokes the sleep example writing lines tagged tag, with
// the logging service logService ("" the function's), and returns the
// invocation's id and the instance it ran on.
func invokeLogged(t *testing.T, s *stack, c *client.Client, fn, logService, tag string, lines int) (string, string) {
	t.Helper()
	res, err := c.InvokeLogged(s.ctx(), fn, "", logService, fmt.Appendf(nil, `{"lines":%d,"tag":%q,"stat":true}`, lines, tag))
	if err != nil || !res.OK() {
		t.Fatalf("invoke %s (%s): %+v %v", fn, tag, res, err)
	}
	var out sleepResult
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("invoke %s: %s: %v", fn, res.Payload, err)
	}
	return res.InvocationID, instanceOf(out)
}

// received is what a receiver got, by invocation id: the lines, and
// whether a REPORT came.
type received struct {
	lines  map[string][]string
	report map[string]testenv.LogRecord
	all    []testenv.LogRecord
}

func receivedBy(t *testing.T, svc *testenv.CollectorService) received {
	t.Helper()
	recs, err := svc.Records()
	if err != nil {
		t.Fatal(err)
	}
	r := received{lines: map[string][]string{}, report: map[string]testenv.LogRecord{}, all: recs}
	for _, rec := range recs {
		id := rec.Attrs["faas.invocation_id"]
		if rec.Attrs["ember.record"] == "platform.report" {
			r.report[id] = rec
		} else {
			r.lines[id] = append(r.lines[id], rec.Body)
		}
	}
	return r
}

// TestLoggingServices: a tenant's functions send every line of output and
// a REPORT per invocation to the tenant's logging service (a real
// OpenTelemetry Collector, each receiver checking its own bearer token),
// over the instance's relay. An invocation with the same service reuses
// the configured instance; another service or another tenant never does;
// a service that is down costs the invocation nothing (its records are
// counted as failed); credentials appear in no API answer, log or process
// argument.
func TestLoggingServices(t *testing.T) {
	col := testenv.StartCollector(t, "alpha", "beta", "other")
	s := newStack(t, "m128=2", "--log-allow", "127.0.0.1/32")
	alpha, beta, other := col.Services["alpha"], col.Services["beta"], col.Services["other"]
	put := func(c *client.Client, name, endpoint, token string, def bool) {
		t.Helper()
		out, err := c.PutLogService(s.ctx(), wire.LogService{Name: name, Endpoint: endpoint, BearerToken: token, Default: def})
		if err != nil {
			t.Fatalf("logging service %s: %v", name, err)
		}
		if out.Credentials != "bearer" || out.BearerToken != "" || out.Authorization != "" {
			t.Fatalf("logging service answer %+v", out)
		}
	}
	put(s.client, "alpha", alpha.Endpoint, alpha.Token, true)
	put(s.client, "beta", beta.Endpoint, beta.Token, false)
	down := "http://" + freeAddr(t) + "/v1/logs" // nothing listens there
	put(s.client, "down", down, "down-token-"+alpha.Token[:8], false)
	s.deploy("talker", "sleep", wire.FunctionConfig{})

	// The tenant's default service: every line of every invocation, and a
	// REPORT each; the same configured instance throughout.
	const lines = 25
	var ids []string
	var inst string
	for i := range 4 {
		id, in := invokeLogged(t, s, s.client, "talker", "", fmt.Sprintf("alpha-%d", i), lines)
		if i > 0 && in != inst {
			t.Fatalf("invocation %d ran on %s, not on the instance configured for alpha (%s)", i, in, inst)
		}
		ids, inst = append(ids, id), in
	}
	var got received
	testenv.Eventually(t, 30*time.Second, "alpha's lines and REPORTs", func() bool {
		got = receivedBy(t, alpha)
		for _, id := range ids {
			if len(got.lines[id]) < lines+1 || got.report[id].Body == "" { // +1: the example's own log line
				return false
			}
		}
		return true
	})
	for i, id := range ids {
		want := fmt.Sprintf("alpha-%d line %d of %d", i, lines, lines)
		if !strings.Contains(strings.Join(got.lines[id], "\n"), want) {
			t.Fatalf("invocation %s: lines %q lack %q", id, got.lines[id], want)
		}
		rep := got.report[id]
		if !strings.HasPrefix(rep.Body, "REPORT RequestId: "+id) || rep.Attrs["ember.status"] != "ok" || rep.Resource["faas.name"] != "talker" ||
			rep.Resource["ember.tenant"] != tenant || rep.Resource["ember.instance"] != inst {
			t.Fatalf("REPORT of %s: %q %v %v", id, rep.Body, rep.Attrs, rep.Resource)
		}
	}

	// Another service: not the instance configured for alpha (the warming
	// pool has one); its lines reach beta only.
	betaID, betaInst := invokeLogged(t, s, s.client, "talker", "beta", "beta-0", lines)
	if betaInst == inst {
		t.Fatalf("the invocation for beta ran on the instance configured for alpha (%s)", inst)
	}
	testenv.Eventually(t, 30*time.Second, "beta's lines", func() bool {
		return len(receivedBy(t, beta).lines[betaID]) >= lines+1
	})
	// ...and the next alpha invocation still finds alpha's instance.
	id, in := invokeLogged(t, s, s.client, "talker", "", "alpha-again", 3)
	if in != inst {
		t.Fatalf("alpha again ran on %s, want %s", in, inst)
	}
	ids = append(ids, id)

	// Another tenant with its own service: never an instance of e2e's, and
	// its lines reach its service only.
	oc := s.tenantClient("logs2")
	put(oc, "mine", other.Endpoint, other.Token, true)
	s.deployAs(oc, "talker", "sleep", wire.FunctionConfig{})
	otherID, otherInst := invokeLogged(t, s, oc, "talker", "", "other-0", lines)
	if otherInst == inst || otherInst == betaInst {
		t.Fatalf("tenant logs2 ran on e2e's instance %s", otherInst)
	}
	testenv.Eventually(t, 30*time.Second, "the other tenant's lines", func() bool {
		return len(receivedBy(t, other).lines[otherID]) >= lines+1
	})

	// A service that is down: the invocations succeed; their records are
	// counted as failed (ember-init reports its counts with each result,
	// so the test keeps invoking until the count shows).
	failed := regexp.MustCompile(`ember_log_records_total\{outcome="failed",tenant="e2e"\} (\d+)`)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		invokeLogged(t, s, s.client, "talker", "down", fmt.Sprintf("down-%d", i), lines)
		if m := failed.FindSubmatch(scrape(t, s)); m != nil {
			if n, _ := strconv.Atoi(string(m[1])); n >= lines {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed records counted for the service that is down:\n%s", scrape(t, s))
		}
		time.Sleep(100 * time.Millisecond) // pacing the invocations that carry the counts
	}

	// Nothing crossed: each receiver holds only its own tenant's and
	// service's invocations.
	a, b, o := receivedBy(t, alpha), receivedBy(t, beta), receivedBy(t, other)
	for _, r := range a.all {
		if id := r.Attrs["faas.invocation_id"]; id == betaID || id == otherID || r.Resource["ember.tenant"] != tenant {
			t.Fatalf("alpha got a record of another service or tenant: %+v", r)
		}
	}
	for _, r := range b.all {
		if r.Attrs["faas.invocation_id"] != betaID {
			t.Fatalf("beta got %+v", r)
		}
	}
	for _, r := range o.all {
		if r.Resource["ember.tenant"] != "logs2" {
			t.Fatalf("the other tenant's service got %+v", r)
		}
	}

	// Credentials: not in the API's answers, emberd's log, the instances'
	// logs, or any process's command line.
	l, err := s.client.ListLogServices(s.ctx())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(l)
	secrets := []string{alpha.Token, beta.Token, other.Token}
	for _, sec := range secrets {
		if bytes.Contains(body, []byte(sec)) {
			t.Fatal("the API shows a token")
		}
	}
	_ = filepath.Walk(s.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || !strings.HasSuffix(p, ".log") {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, sec := range secrets {
			if bytes.Contains(b, []byte(sec)) {
				t.Errorf("%s holds a token", p)
			}
		}
		return nil
	})
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		for _, sec := range secrets {
			if bytes.Contains(b, []byte(sec)) {
				t.Errorf("%s shows a token", p)
			}
		}
	}
}

// scrape reads emberd's /metrics.
func scrape(t *testing.T, s *stack) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(s.ctx(), http.MethodGet, "http://"+s.api+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+s.adminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// BenchmarkHotInvokeLogging: hot synchronous invokes of a function writing
// 3 lines with a logging service (a real Collector) and of two copies
// without (each in its own tenant, so on its own instance), 400 each, interleaved in random order after a warm-up: the medians, the ratio
// logged / plain (target: under 1.05) beside the ratio of the two plain
// copies (the floor: what two instances differ by in this run), and how
// many of the logged invocations' records the service got.
func BenchmarkHotInvokeLogging(b *testing.B) {
	col := testenv.StartCollector(b, "svc")
	svc := col.Services["svc"]
	s := newStack(b, "m128=3", "--log-allow", "127.0.0.1/32")
	if _, err := s.client.PutLogService(s.ctx(), wire.LogService{Name: "svc", Endpoint: svc.Endpoint, BearerToken: svc.Token}); err != nil {
		b.Fatal(err)
	}
	// Three tenants, so that each function has an instance of its own.
	clients := map[string]*client.Client{"logged": s.client, "plain": s.tenantClient("plain"), "plain2": s.tenantClient("plain2")}
	s.deploy("fn", "sleep", wire.FunctionConfig{LogService: "svc"})
	s.deployAs(clients["plain"], "fn", "sleep", wire.FunctionConfig{})
	s.deployAs(clients["plain2"], "fn", "sleep", wire.FunctionConfig{})
	payload := []byte(`{"lines":2,"tag":"bench"}`) // + the example's own line
	call := func(who string) time.Duration {
		t0 := time.Now()
		res, err := clients[who].Invoke(s.ctx(), "fn", "", payload)
		if err != nil || !res.OK() {
			b.Fatalf("invoke as %s: %+v %v", who, res, err)
		}
		return time.Since(t0)
	}
	for range 50 {
		call("logged")
		call("plain")
		call("plain2")
	}
	// Each round calls the three in a random order: the position in a
	// round costs differently (the previous call's release and accounting
	// overlap the next call).
	took := map[string][]time.Duration{}
	fns := []string{"logged", "plain", "plain2"}
	for range 400 {
		for _, i := range rand.Perm(len(fns)) {
			took[fns[i]] = append(took[fns[i]], call(fns[i]))
		}
	}
	logged, plain, plain2 := took["logged"], took["plain"], took["plain2"]
	l, p, p2 := median(logged), median(plain), median(plain2)
	report(b, "hot invoke, no logging service: median", ms(p), "ms-plain")
	report(b, "hot invoke, logging service: median", ms(l), "ms-logged")
	report(b, "ratio logged / plain", float64(l)/float64(p), "x-logging")
	report(b, "floor: ratio plain copy / plain", float64(p2)/float64(p), "x-floor")
	want := 450 * 4 // lines and a REPORT per logged invocation
	var got int
	deadline := time.Now().Add(30 * time.Second)
	for got < want && time.Now().Before(deadline) {
		recs, _ := svc.Records()
		got = len(recs)
		time.Sleep(100 * time.Millisecond) // the last batches are on their way
	}
	report(b, "records at the service / records written", float64(got)/float64(want), "x-delivered")
}
