package api_test

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/codestore"
	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
)

// echoInvoker resolves the version through the real registry (as the
// scheduler does) and echoes the payload; payload "fail" is a function
// error, "boom" a platform failure.
type echoInvoker struct{ reg *registry.Registry }

func (e echoInvoker) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	v, err := e.reg.Resolve(ctx, inv.Tenant, inv.Function, inv.Qualifier)
	if err != nil {
		return invoke.Result{}, err
	}
	res := invoke.Result{InvocationID: inv.ID, Status: invoke.StatusOK, Payload: inv.Payload, Version: v.Version,
		Start: invoke.StartHot, Duration: 1500 * time.Microsecond, LogTail: []byte("START\nhello log\n")}
	switch string(inv.Payload) {
	case "fail":
		res.Status, res.ErrorType, res.Payload = invoke.StatusFunctionError, "Boom", []byte(`{"errorMessage":"boom"}`)
	case "boom":
		return invoke.Result{}, fmt.Errorf("agent gone: %w", registry.ErrUnavailable)
	case "busy":
		return invoke.Result{}, fmt.Errorf("queue full: %w", errBusy)
	case "bug":
		return invoke.Result{}, errors.New("something broke")
	}
	return res, nil
}

var errBusy = errors.New("scheduler-style busy")

// memProducer keeps produced records; Lag reports them as unconsumed on
// partition 0 of each binding's topic.
type memProducer struct {
	mu   sync.Mutex
	recs map[string][]api.Record
	reg  *registry.Registry
}

func (p *memProducer) Produce(_ context.Context, topic string, recs []api.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recs[topic] = append(p.recs[topic], recs...)
	return nil
}

func (p *memProducer) Lag(ctx context.Context, id string) ([]api.PartitionLag, error) {
	bs, err := p.reg.ListBindings(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, b := range bs {
		if b.ID == id {
			p.mu.Lock()
			n := int64(len(p.recs[b.Topic]))
			p.mu.Unlock()
			return []api.PartitionLag{{Partition: 0, End: n, Committed: -1, Lag: n}}, nil
		}
	}
	return nil, fmt.Errorf("binding %s not running", id)
}

type env struct {
	srv   *httptest.Server
	reg   *registry.Registry
	code  *codestore.Store
	prod  *memProducer
	pool  *pool.Store
	c     *client.Client
	token string
}

func setup(t *testing.T, token string) *env {
	t.Helper()
	rdb, _ := testenv.Redis(t)
	reg, err := registry.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	code, err := codestore.New(codestore.Config{Dir: t.TempDir(), MaxZipBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pool.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	prod := &memProducer{recs: map[string][]api.Record{}, reg: reg}
	s, err := api.New(api.Config{Token: token, Metrics: prometheus.NewRegistry(), MaxPayloadBytes: 64 << 10,
		Unavailable: []error{errBusy}},
		api.Deps{Registry: reg, Code: code, Invoker: echoInvoker{reg}, Producer: prod, Pool: ps, Lag: prod})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL, client.WithTenant("acme"), client.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, reg: reg, code: code, prod: prod, pool: ps, c: c, token: token}
}

func goodZip(t *testing.T, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	fh := &zip.FileHeader{Name: "bootstrap", Method: zip.Deflate}
	fh.SetMode(0o755)
	w, _ := zw.CreateHeader(fh)
	_, _ = w.Write([]byte(body))
	_ = zw.Close()
	return buf.Bytes()
}

func TestFunctionLifecycle(t *testing.T) {
	ctx := context.Background()
	e := setup(t, "")
	if _, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{MemoryMB: 256}, nil); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("create without code: %v", err)
	}
	zipA := goodZip(t, "#!/bin/sh\necho a\n")
	f, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{MemoryMB: 256, TimeoutMs: 5000, Env: map[string]string{"K": "v"}}, bytes.NewReader(zipA))
	if err != nil {
		t.Fatal(err)
	}
	if f.Tenant != "acme" || f.MemoryMB != 256 || f.TimeoutMs != 5000 || f.Env["K"] != "v" || !strings.HasPrefix(f.CodeDigest, "sha256:") || f.CodeSize != int64(len(zipA)) {
		t.Fatalf("deployed %+v", f)
	}
	// Update config only: code and env kept.
	f2, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{MemoryMB: 512}, nil)
	if err != nil || f2.CodeDigest != f.CodeDigest || f2.MemoryMB != 512 || f2.Env["K"] != "v" || f2.TimeoutMs != 5000 {
		t.Fatalf("update = %+v, %v", f2, err)
	}
	// A bad package is a 400 with the codestore's reason.
	var bad bytes.Buffer
	zw := zip.NewWriter(&bad)
	w, _ := zw.Create("../evil")
	_, _ = w.Write([]byte("x"))
	_ = zw.Close()
	_, err = e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{}, &bad)
	var ae *client.APIError
	if !errors.Is(err, registry.ErrInvalid) || !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "zip slip") {
		t.Fatalf("zip slip deploy: %v", err)
	}
	// Over the store's 1 MiB limit: 413.
	huge := make([]byte, 2<<20)
	if _, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{}, bytes.NewReader(huge)); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("huge deploy: %v", err)
	}
	if _, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{MemoryMB: 4096}, nil); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad memory: %v", err)
	}
	v1, err := e.c.PublishVersion(ctx, "echo")
	if err != nil || v1.Version != "1" || v1.MemoryMB != 512 {
		t.Fatalf("publish = %+v, %v", v1, err)
	}
	if v, _ := e.c.PublishVersion(ctx, "echo"); v.Version != "1" {
		t.Fatalf("unchanged publish gave version %s", v.Version)
	}
	got, err := e.c.GetFunction(ctx, "echo")
	if err != nil || len(got.Versions) != 1 {
		t.Fatalf("get = %+v, %v", got, err)
	}
	list, err := e.c.ListFunctions(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "echo" {
		t.Fatalf("list = %+v, %v", list, err)
	}
	// Tenants are isolated.
	other, _ := client.New(e.srv.URL, client.WithTenant("other"))
	if _, err := other.GetFunction(ctx, "echo"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("other tenant sees echo: %v", err)
	}
	if l, _ := other.ListFunctions(ctx); len(l) != 0 {
		t.Fatalf("other tenant lists %v", l)
	}
	// Code is downloadable by digest, byte for byte.
	rc, size, err := e.c.FetchCode(ctx, f.CodeDigest)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(b, zipA) || size != int64(len(zipA)) {
		t.Fatalf("fetched %d bytes, want %d", len(b), len(zipA))
	}
	if _, _, err := e.c.FetchCode(ctx, "sha256:"+strings.Repeat("0", 64)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("missing code: %v", err)
	}
	if _, _, err := e.c.FetchCode(ctx, "sha256:..%2F..%2Fetc"); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad digest: %v", err)
	}
	if err := e.c.DeleteFunction(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteFunction(ctx, "echo"); err != nil {
		t.Fatalf("delete missing: %v", err)
	}
	if _, err := e.c.GetFunction(ctx, "echo"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestInvoke(t *testing.T) {
	ctx := context.Background()
	e := setup(t, "")
	if _, err := e.c.Invoke(ctx, "nope", "", []byte("{}")); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("invoke unknown: %v", err)
	}
	if _, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{}, bytes.NewReader(goodZip(t, "x"))); err != nil {
		t.Fatal(err)
	}
	res, err := e.c.Invoke(ctx, "echo", "", []byte(`{"hi":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || string(res.Payload) != `{"hi":1}` || res.Version != "$LATEST" || res.Start != "hot" ||
		res.Duration != 1500*time.Microsecond || string(res.LogTail) != "START\nhello log\n" || len(res.InvocationID) != 32 {
		t.Fatalf("result %+v", res)
	}
	res, err = e.c.Invoke(ctx, "echo", "", []byte("fail"))
	if err != nil || res.Status != "function_error" || res.ErrorType != "Boom" || !strings.Contains(string(res.Payload), "boom") {
		t.Fatalf("function error must be a 200 with a status: %+v, %v", res, err)
	}
	_, err = e.c.Invoke(ctx, "echo", "", []byte("boom"))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 503 || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("platform failure: %v", err)
	}
	for payload, code := range map[string]int{"busy": 503, "bug": 502} {
		_, err = e.c.Invoke(ctx, "echo", "", []byte(payload))
		if !errors.As(err, &ae) || ae.StatusCode != code {
			t.Fatalf("invoke %s: %v, want %d", payload, err, code)
		}
	}
	if _, err := e.c.Invoke(ctx, "echo", "7", nil); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown version: %v", err)
	}
	if _, err := e.c.Invoke(ctx, "echo", "x", nil); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad qualifier: %v", err)
	}
	if _, err := e.c.PublishVersion(ctx, "echo"); err != nil {
		t.Fatal(err)
	}
	if res, err := e.c.Invoke(ctx, "echo", "1", []byte("{}")); err != nil || res.Version != "1" {
		t.Fatalf("invoke version 1: %+v, %v", res, err)
	}
	big := bytes.Repeat([]byte("a"), 64<<10+1)
	if _, err := e.c.Invoke(ctx, "echo", "", big); !errors.Is(err, client.ErrTooLarge) {
		t.Fatalf("oversized payload: %v", err)
	}
}

func TestBindingsProduceStatus(t *testing.T) {
	ctx := context.Background()
	e := setup(t, "")
	if _, err := e.c.PutBinding(ctx, wire.Binding{ID: "b1", Function: "echo", Topic: "in"}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("binding to unknown function: %v", err)
	}
	if _, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{}, bytes.NewReader(goodZip(t, "x"))); err != nil {
		t.Fatal(err)
	}
	b, err := e.c.PutBinding(ctx, wire.Binding{ID: "b1", Function: "echo", Topic: "in", BatchSize: 10, BatchWindowMs: 50})
	if err != nil {
		t.Fatal(err)
	}
	if b.Tenant != "acme" || b.GroupID != "ember-b1" || b.DLQTopic != "in.dlq" || b.Enabled == nil || !*b.Enabled || b.BatchWindowMs != 50 {
		t.Fatalf("binding %+v", b)
	}
	if _, err := e.c.PutBinding(ctx, wire.Binding{ID: "b2", Function: "echo", Topic: "bad topic"}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad topic: %v", err)
	}
	if err := e.c.DeleteFunction(ctx, "echo"); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("delete bound function: %v", err)
	}
	n, err := e.c.Produce(ctx, "in", []wire.Record{{Key: "k", Value: "v1", Headers: map[string]string{"h": "1"}}, {Value: "v2"}})
	if err != nil || n != 2 {
		t.Fatalf("produce = %d, %v", n, err)
	}
	if recs := e.prod.recs["in"]; len(recs) != 2 || string(recs[0].Key) != "k" || recs[1].Key != nil || recs[0].Headers["h"] != "1" {
		t.Fatalf("produced %+v", recs)
	}
	if _, err := e.c.Produce(ctx, "in", nil); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("empty produce: %v", err)
	}
	// Pool state from the real pool store.
	if err := e.pool.RegisterAgent(ctx, pool.Agent{ID: "a1", Addr: "127.0.0.1:7000", Started: time.Now()}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := e.pool.AddWarm(ctx, "i1", "a1", "m256"); err != nil {
		t.Fatal(err)
	}
	st, err := e.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Agents) != 1 || st.Agents[0].ID != "a1" || len(st.Occupancy) != 1 || st.Occupancy[0].Class != "m256" || st.Occupancy[0].Warm != 1 {
		t.Fatalf("status pool: %+v", st)
	}
	if len(st.Bindings) != 1 || st.Bindings[0].ID != "b1" || len(st.Bindings[0].Partitions) != 1 || st.Bindings[0].Partitions[0].Lag != 2 {
		t.Fatalf("status bindings: %+v", st.Bindings)
	}
	bs, err := e.c.ListBindings(ctx)
	if err != nil || len(bs) != 1 {
		t.Fatalf("list bindings: %+v, %v", bs, err)
	}
	if err := e.c.DeleteBinding(ctx, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteBinding(ctx, "b1"); err != nil {
		t.Fatalf("delete missing binding: %v", err)
	}
	if err := e.c.DeleteFunction(ctx, "echo"); err != nil {
		t.Fatalf("delete after unbind: %v", err)
	}
}

func TestAuthTenantMetrics(t *testing.T) {
	ctx := context.Background()
	e := setup(t, "s3cret")
	if err := e.c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.ListFunctions(ctx); err != nil {
		t.Fatalf("with token: %v", err)
	}
	for _, tok := range []string{"", "wrong", "s3cretX"} {
		c, _ := client.New(e.srv.URL, client.WithToken(tok))
		if _, err := c.ListFunctions(ctx); !errors.Is(err, client.ErrUnauthorized) {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	// /healthz and /metrics need no token.
	for _, p := range []string{"/healthz", "/metrics"} {
		resp, err := http.Get(e.srv.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/functions", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set(wire.HeaderTenant, "bad tenant!")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad tenant header: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, _ = http.Get(e.srv.URL + "/metrics")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`ember_api_requests_total{code="200",route="GET /v1/functions"} 1`,
		`ember_api_requests_total{code="401",route="GET /v1/functions"} 3`,
		`ember_api_requests_total{code="400",route="GET /v1/functions"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s\n%s", want, body)
		}
	}
	if strings.Contains(string(body), "s3cret") {
		t.Fatal("token leaked into metrics")
	}
}
