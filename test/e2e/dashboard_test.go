package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ember-run/ember/engine/api/wire"
)

// browser starts headless Chromium (Debian's, installed by make test) with
// a fresh profile and no background traffic to the internet.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1400, 1000))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	// The first action starts the browser, which lives as long as the
	// context of that action: this one, not a step's shorter one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// The dashboard in a real browser: it opens with a tenant's key, shows
// every binding with the lag the API reports, draws the lag chart, lists a
// dead-lettered record whose Redrive button feeds it to the (fixed)
// function again; another tenant's key shows none of it.
func TestDashboard(t *testing.T) {
	s := newStack(t, "m128=2")
	s.deploy("picky", "kafka-picky", wire.FunctionConfig{})
	s.createTopic("web", 1)
	s.createTopic("held", 2)
	zero, off := 0, false
	for _, b := range []wire.Binding{
		{ID: "web", Function: "picky", Topic: "web", BatchSize: 1, StartingPosition: "earliest",
			ResultTopic: "web.results", MaxRetryAttempts: &zero},
		{ID: "held", Function: "picky", Topic: "held", StartingPosition: "earliest", Enabled: &off},
	} {
		if _, err := s.client.PutBinding(s.ctx(), b); err != nil {
			t.Fatal(err)
		}
	}
	var values []string
	for i := range 20 {
		values = append(values, fmt.Sprintf("ok-%d", i))
	}
	s.produce("web", append(values, "fail-1"), 0)
	s.produce("held", []string{"a", "b", "c", "d", "e", "f", "g"}, 0)
	s.waitNoLag("web", 21, time.Minute)
	dls, err := s.client.DeadLetters(s.ctx(), "web", 10)
	if err != nil || len(dls) != 1 || string(dls[0].Value) != "fail-1" {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}

	// The same from the terminal.
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "ember"), args...)
		cmd.Env = append(os.Environ(), "EMBER_API=http://"+s.api, "EMBER_API_KEY="+s.tenantKey)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ember %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := cli("lag", "held", "--since", "1h"); !strings.Contains(out, "binding held: STOP, 7 records") || !strings.ContainsAny(out, "▁▂▃▄▅▆▇█") {
		t.Errorf("ember lag held:\n%s", out)
	}
	if out := cli("dlq", "list", "web"); !strings.Contains(out, `"fail-1"`) || !strings.Contains(out, "max retry attempts 0") {
		t.Errorf("ember dlq list web:\n%s", out)
	}
	if out := cli("status"); !strings.Contains(out, "STOP") || !strings.Contains(out, "held STOP:") {
		t.Errorf("ember status:\n%s", out)
	}

	ctx := browser(t)
	base := "http://" + s.api + "/ui/"
	// do runs steps for at most 30 s and says what the page showed when they fail.
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, steps...); err != nil {
			text, terr := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
			t.Fatalf("%s: %v; the page shows (%v):\n%s", what, err, terr, text)
		}
	}
	do("open the dashboard", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.SendKeys(chromedp.CSS("#key"), s.tenantKey), chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#bindings tr[data-binding="held"] .lag`)))
	// Lag as the page shows it against the API, within one refresh (2 s).
	lagOnPage := func(id string) string {
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#bindings tr[data-binding="`+id+`"] .lag`)))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	st, err := s.client.Status(s.ctx())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range st.Bindings {
		if b.Lag == nil {
			t.Fatalf("binding %s without lag: %s", b.ID, b.LagError)
		}
		want := strconv.FormatInt(b.Lag.Records, 10)
		got := lagOnPage(b.ID)
		for deadline := time.Now().Add(3 * time.Second); got != want && time.Now().Before(deadline); got = lagOnPage(b.ID) {
			time.Sleep(200 * time.Millisecond) // the page refreshes every 2 s
		}
		if got != want {
			t.Errorf("binding %s: the page shows lag %s, the API %s", b.ID, got, want)
		}
	}
	if got := lagOnPage("held"); got != "7" {
		t.Errorf("the disabled binding shows lag %s, want 7", got)
	}
	held, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#bindings tr[data-binding="held"] .status`)))
	if err != nil || held != "STOP" {
		t.Errorf("the disabled binding's status on the page: %q %v, want STOP", held, err)
	}

	// The binding's detail: a lag line per partition, the dead letter.
	do("binding detail", chromedp.Click(chromedp.CSS(`#bindings tr[data-binding="web"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#lag-chart polyline[data-partition="0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#latency-chart rect`)),
		chromedp.WaitVisible(chromedp.CSS(`#dlq button.redrive`)))
	reason, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#dlq tbody tr`)))
	if err != nil || !strings.Contains(reason, "fail-1") {
		t.Fatalf("dead letter row %q, %v", reason, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	saveScreenshot(t, shot)

	// The bug is fixed (kafka-echo takes any record); Redrive on the page.
	s.deploy("picky", "kafka-echo", wire.FunctionConfig{})
	do("redrive from the page", chromedp.Click(chromedp.CSS(`#dlq button.redrive`)),
		chromedp.Poll[chromedp.Void](`document.querySelector("#redrive-result").textContent.startsWith("redrive:")`))
	res, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#redrive-result")))
	if res != "redrive: 1 read, 1 handled, 0 failed again" {
		t.Fatalf("redrive result on the page: %q", res)
	}
	// kafka-picky's results and kafka-echo's both list the values they took.
	n := 0
	for _, m := range s.readTopic("web.results") {
		var r struct{ IDs []string }
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatalf("result %q: %v", m.Value, err)
		}
		n += strings.Count(strings.Join(r.IDs, " "), "fail-1")
	}
	if n != 1 {
		t.Fatalf("the redriven record reached the fixed function %d times, want 1", n)
	}

	// Another tenant's key: no bindings.
	other, err := s.admin.CreateTenant(s.ctx(), "dash-other")
	if err != nil {
		t.Fatal(err)
	}
	do("open as another tenant", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#key")),
		chromedp.SendKeys(chromedp.CSS("#key"), other.APIKey), chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS("#no-bindings")))
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#bindings tbody tr").length`))
	if err != nil || rows != 0 {
		t.Fatalf("another tenant sees %d bindings (%v)", rows, err)
	}
}

// saveScreenshot keeps the dashboard's picture with the test's output and,
// with EMBER_UPDATE_DOCS=1, as docs/dashboard.png.
func saveScreenshot(t *testing.T, png []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv("EMBER_UPDATE_DOCS") == "1" {
		out = filepath.Join("..", "..", "docs", "dashboard.png")
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard screenshot: %s (%d bytes)", out, len(png))
}
