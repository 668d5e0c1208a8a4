package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
)

// The alert rules shipped in deploy/prometheus are valid and fire as their
// unit tests script (promtool, from Debian's prometheus package).
func TestAlertRules(t *testing.T) {
	dir := filepath.Join("..", "..", "deploy", "prometheus")
	for _, args := range [][]string{{"check", "rules", "ember-rules.yml"}, {"test", "rules", "ember-rules.test.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// promQuery is one answer of Prometheus' /api/v1/query.
type promQuery struct {
	Status string `json:"status"`
	Error  string `json:"error"`
	Data   struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// A real Prometheus scrapes a real emberd with the rules of deploy/prometheus:
// the lag of a binding reads back through Prometheus' HTTP API under
// kafka_exporter's names, its STOP status raises the alert, and every query
// of the Grafana dashboard in deploy/grafana runs.
func TestPrometheusReadsLag(t *testing.T) {
	s := newStack(t, "m128=1")
	s.deploy("echo", "kafka-echo", wire.FunctionConfig{})
	s.createTopic("scraped", 2)
	s.createTopic("paused", 1)
	off := false
	bindEcho(t, s, "scraped", "scraped", 10)
	if _, err := s.client.PutBinding(s.ctx(), wire.Binding{ID: "paused", Function: "echo", Topic: "paused",
		StartingPosition: "earliest", Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	s.produce("scraped", ids(100), 0)
	s.produce("paused", ids(9), 0)
	s.waitNoLag("scraped", 100, time.Minute)

	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(s.adminKey), 0o600); err != nil {
		t.Fatal(err)
	}
	rules, _ := filepath.Abs(filepath.Join("..", "..", "deploy", "prometheus", "ember-rules.yml"))
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: ember
    authorization: {credentials_file: %q}
    static_configs: [{targets: [%q]}]
`, rules, token, s.api)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cmd := exec.Command("prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
	logf, _ := os.Create(filepath.Join(dir, "prometheus.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus (make test-deps installs it): %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait(); logf.Close() })
	query := func(q string) promQuery {
		t.Helper()
		var out promQuery
		resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return promQuery{Status: "unreachable", Error: err.Error()}
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			// Prometheus starting up answers its API in plain text
			// ("Service Unavailable") until it is ready: not yet, as
			// unreachable (CI met it once).
			return promQuery{Status: "starting", Error: resp.Status}
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("query %s: %v", q, err)
		}
		return out
	}
	value := func(q string) (float64, bool) {
		r := query(q)
		if r.Status != "success" || len(r.Data.Result) != 1 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	waitValue := func(q string, want float64) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			v, ok := value(q)
			if ok && v == want {
				return
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(dir, "prometheus.log"))
				t.Fatalf("%s = %v (%v), want %v\n%s", q, v, ok, want, log)
			}
			time.Sleep(250 * time.Millisecond) // Prometheus scrapes every second
		}
	}
	waitValue(fmt.Sprintf(`sum(kafka_consumergroup_lag{consumergroup="ember.%s.paused"})`, tenant), 9)
	waitValue(fmt.Sprintf(`sum(kafka_consumergroup_lag{consumergroup="ember.%s.scraped"})`, tenant), 0)
	waitValue(fmt.Sprintf(`ember_binding_lag_status{binding="%s/paused",status="STOP"}`, tenant), 1)
	waitValue(fmt.Sprintf(`sum(kafka_topic_partition_current_offset{topic="%s"})`, topic("scraped")), 100)
	if v, ok := value(fmt.Sprintf(`kafka_consumergroup_lag_seconds{consumergroup="ember.%s.paused"}`, tenant)); !ok || v <= 0 {
		t.Fatalf("time lag of the paused binding through Prometheus: %v %v", v, ok)
	}
	// The rule for a stopped binding holds it pending (for: 5m).
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/api/v1/alerts")
		if err != nil {
			t.Fatal(err)
		}
		var alerts struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&alerts)
		resp.Body.Close()
		found := false
		for _, a := range alerts.Data.Alerts {
			found = found || (err == nil && a.Labels["alertname"] == "EmberBindingStopped" && a.Labels["binding"] == tenant+"/paused")
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no EmberBindingStopped alert for the paused binding: %+v %v", alerts.Data.Alerts, err)
		}
		time.Sleep(250 * time.Millisecond) // rules are evaluated every second
	}

	// Every query of the Grafana dashboard runs against these metrics.
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "ember-lag.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana dashboard: %v", err)
	}
	// Panels on gauges have data at once (rates need two scrapes or more).
	mustHaveData := map[string]bool{"Lag status": true, "Time lag": true, "Records behind": true, "Offset lag per partition": true,
		"Time lag per partition": true, "Pool instances": true, "Bindings not OK": true}
	vars := regexp.MustCompile(`\$(binding|__rate_interval)`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			q := vars.ReplaceAllStringFunc(tg.Expr, func(v string) string {
				if v == "$binding" {
					return ".*"
				}
				return "1m"
			})
			r := query(q)
			if r.Status != "success" {
				t.Errorf("panel %q: %s: %s %s", p.Title, q, r.Status, r.Error)
			}
			if mustHaveData[p.Title] && len(r.Data.Result) == 0 {
				t.Errorf("panel %q: %s: no data", p.Title, q)
			}
			n++
		}
	}
	t.Logf("%d dashboard queries run", n)
}
