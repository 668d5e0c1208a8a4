package api_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/consumers/kafkatest"
	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/codestore"
	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/tenants"
	"github.com/ember-run/ember/internal/apikafka"
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

type env struct {
	srv    *httptest.Server
	reg    *registry.Registry
	code   *codestore.Store
	kafka  *kafkatest.Cluster
	pool   *pool.Store
	ten    *tenants.Store
	c      *client.Client // tenant acme
	other  *client.Client // tenant other
	admin  *client.Client
	keys   map[string]string // tenant -> key; "admin" -> the administrator key
	scrape string
}

// setup serves the API over real Redis and the embedded Kafka-protocol
// broker, with tenants acme and other.
func setup(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
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
	adminKey := tenants.NewKey()
	ten, err := tenants.New(rdb, tenants.WithAdminKey(adminKey))
	if err != nil {
		t.Fatal(err)
	}
	cluster := kafkatest.Start(t, embedded.Config{})
	topics, err := consumers.NewTopics(cluster.Brokers, consumers.Conn{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topics.Close() })
	scrape := "scrape-" + tenants.NewKey()
	s, err := api.New(api.Config{Metrics: prometheus.NewRegistry(), MaxPayloadBytes: 64 << 10,
		Unavailable: []error{errBusy}, MetricsToken: scrape},
		api.Deps{Tenants: ten, Registry: reg, Code: code, Topics: topics, Invoker: echoInvoker{reg},
			Producer: apikafka.Producer{Topics: topics}, Pool: ps})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	e := &env{srv: srv, reg: reg, code: code, kafka: cluster, pool: ps, ten: ten,
		keys: map[string]string{"admin": adminKey}, scrape: scrape}
	e.admin = e.client(t, adminKey)
	for _, name := range []string{"acme", "other"} {
		k, err := e.admin.CreateTenant(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		e.keys[name] = k.APIKey
	}
	e.c, e.other = e.client(t, e.keys["acme"]), e.client(t, e.keys["other"])
	return e
}

func (e *env) client(t testing.TB, key string) *client.Client {
	t.Helper()
	c, err := client.New(e.srv.URL, client.WithAPIKey(key))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func goodZip(t testing.TB, body string) []byte {
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
	e := setup(t)
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
	if _, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{MemoryMB: 20480}, nil); !errors.Is(err, registry.ErrInvalid) {
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
	if _, err := e.other.GetFunction(ctx, "echo"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("other tenant sees echo: %v", err)
	}
	if l, _ := e.other.ListFunctions(ctx); len(l) != 0 {
		t.Fatalf("other tenant lists %v", l)
	}
	// Code is downloadable by digest, byte for byte, by its tenant only.
	if _, _, err := e.other.FetchCode(ctx, f.CodeDigest); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("other tenant fetched acme's code: %v", err)
	}
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
	e := setup(t)
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
	if _, err := e.c.Invoke(ctx, "echo", "x", nil); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("unknown alias: %v", err)
	}
	if _, err := e.c.Invoke(ctx, "echo", "007", nil); !errors.Is(err, registry.ErrInvalid) {
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

func TestTopicsBindingsProduceStatus(t *testing.T) {
	ctx := context.Background()
	e := setup(t)
	if _, err := e.c.PutBinding(ctx, wire.Binding{ID: "b1", Function: "echo", Topic: "in"}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("binding to unknown function: %v", err)
	}
	if _, err := e.c.DeployFunction(ctx, "echo", wire.FunctionConfig{}, bytes.NewReader(goodZip(t, "x"))); err != nil {
		t.Fatal(err)
	}
	// No topic yet: neither a binding nor a produce may create one.
	if _, err := e.c.PutBinding(ctx, wire.Binding{ID: "b1", Function: "echo", Topic: "in"}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("binding to a missing topic: %v", err)
	}
	if _, err := e.c.Produce(ctx, "in", []wire.Record{{Value: "v"}}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("produce to a missing topic: %v", err)
	}
	tp, err := e.c.CreateTopic(ctx, "in", 2)
	if err != nil || tp.Name != "acme.in" || tp.Owner != "acme" || tp.Partitions != 2 {
		t.Fatalf("create topic = %+v, %v", tp, err)
	}
	if _, err := e.c.CreateTopic(ctx, "bad topic", 1); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("bad topic name: %v", err)
	}
	b, err := e.c.PutBinding(ctx, wire.Binding{ID: "b1", Function: "echo", Topic: "in", BatchSize: 10, BatchWindowMs: 50})
	if err != nil {
		t.Fatal(err)
	}
	if b.Tenant != "acme" || b.Topic != "acme.in" || b.GroupID != "ember.acme.b1" || b.DLQTopic != "acme.in.dlq" ||
		b.Enabled == nil || !*b.Enabled || b.BatchWindowMs != 50 {
		t.Fatalf("binding %+v", b)
	}
	if _, err := e.c.PutBinding(ctx, wire.Binding{ID: "b2", Function: "echo", Topic: "in", GroupID: "someone-elses"}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("chosen group id: %v", err)
	}
	// Every setting round-trips; max_retry_attempts defaults to 2 and 0 is kept.
	if b.MaxRetryAttempts == nil || *b.MaxRetryAttempts != 2 || b.Ordering != "partition" || b.MaxConcurrency != 10 {
		t.Fatalf("defaults of b1: %+v", b)
	}
	zero := 0
	b3, err := e.c.PutBinding(ctx, wire.Binding{ID: "b3", Function: "echo", Topic: "in", Ordering: "key", MaxConcurrency: 20,
		MaxRetryAttempts: &zero, MaxRecordAgeS: 120, BisectOnError: true, ReportBatchItemFailures: true,
		MaxBatchBytes: 1 << 20, IsolationLevel: "read_committed", StartingPosition: "at_timestamp",
		StartingTimestamp: time.Unix(1_700_000_000, 0).UTC(),
		Filters:           []json.RawMessage{json.RawMessage(`{ "value": { "kind": ["order"] } }`)}})
	if err != nil || *b3.MaxRetryAttempts != 0 || b3.Ordering != "key" || b3.MaxConcurrency != 20 || b3.MaxRecordAgeS != 120 ||
		!b3.BisectOnError || !b3.ReportBatchItemFailures || b3.MaxBatchBytes != 1<<20 || b3.IsolationLevel != "read_committed" ||
		len(b3.Filters) != 1 || string(b3.Filters[0]) != `{"value":{"kind":["order"]}}` || !b3.StartingTimestamp.Equal(time.Unix(1_700_000_000, 0)) {
		t.Fatalf("b3 = %+v, %v", b3, err)
	}
	for name, bad := range map[string]wire.Binding{
		"filter":   {ID: "b4", Function: "echo", Topic: "in", Filters: []json.RawMessage{json.RawMessage(`{"value":"order"}`)}},
		"ordering": {ID: "b4", Function: "echo", Topic: "in", Ordering: "random"},
		"age":      {ID: "b4", Function: "echo", Topic: "in", MaxRecordAgeS: 5},
		"forever":  {ID: "b4", Function: "echo", Topic: "in", MaxRetryAttempts: new(-1)},
		"rewind":   {ID: "b4", Function: "echo", Topic: "in", Rewind: &wire.Rewind{Offsets: map[int]int64{0: 1}}},
	} {
		if _, err := e.c.PutBinding(ctx, bad); !errors.Is(err, registry.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	rw, err := e.c.RewindBinding(ctx, "b3", wire.Rewind{Offsets: map[int]int64{0: 3}})
	if err != nil || rw.Rewind == nil || rw.Rewind.ID <= 0 || rw.Rewind.Offsets[0] != 3 {
		t.Fatalf("rewind = %+v, %v", rw.Rewind, err)
	}
	if _, err := e.other.RewindBinding(ctx, "b3", wire.Rewind{Offsets: map[int]int64{0: 3}}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("another tenant rewound b3: %v", err)
	}
	if _, err := e.c.RewindBinding(ctx, "b3", wire.Rewind{}); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("rewind to nowhere: %v", err)
	}
	if err := e.c.DeleteBinding(ctx, "b3"); err != nil {
		t.Fatal(err)
	}
	// Naming Ember's usage topic as a sink gets one in the tenant's namespace.
	if b2, err := e.c.PutBinding(ctx, wire.Binding{ID: "b2", Function: "echo", Topic: "in", ResultTopic: "ember.usage"}); err != nil || b2.ResultTopic != "acme.ember.usage" {
		t.Fatalf("result topic ember.usage: %+v, %v", b2, err)
	}
	if err := e.c.DeleteBinding(ctx, "b2"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteFunction(ctx, "echo"); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("delete bound function: %v", err)
	}
	if err := e.c.DeleteTopic(ctx, "in"); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("delete bound topic: %v", err)
	}
	n, err := e.c.Produce(ctx, "in", []wire.Record{{Key: "k", Value: "v1", Headers: map[string]string{"h": "1"}}, {Value: "v2"}})
	if err != nil || n != 2 {
		t.Fatalf("produce = %d, %v", n, err)
	}
	recs := e.kafka.ReadAll("acme.in")
	if len(recs) != 2 {
		t.Fatalf("read back %d records", len(recs))
	}
	if _, err := e.c.Produce(ctx, "in", nil); !errors.Is(err, registry.ErrInvalid) {
		t.Fatalf("empty produce: %v", err)
	}
	// The administrator grants "other" consume access: it may bind, not produce.
	if _, err := e.other.Produce(ctx, "acme.in", []wire.Record{{Value: "x"}}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("other produced to acme's topic: %v", err)
	}
	if err := e.admin.Grant(ctx, "acme.in", "other", "consume"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.other.Produce(ctx, "acme.in", []wire.Record{{Value: "x"}}); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("other produced under a consume grant: %v", err)
	}
	ots, err := e.other.ListTopics(ctx)
	if err != nil || len(ots) != 1 || ots[0].Name != "acme.in" || ots[0].Grants["other"] != "consume" {
		t.Fatalf("other's topics = %+v, %v", ots, err)
	}
	if err := e.admin.Ungrant(ctx, "acme.in", "other"); err != nil {
		t.Fatal(err)
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
	if len(st.Bindings) != 1 || st.Bindings[0].ID != "b1" {
		t.Fatalf("status bindings: %+v", st.Bindings)
	}
	if ost, err := e.other.Status(ctx); err != nil || len(ost.Bindings) != 0 {
		t.Fatalf("other's status shows %+v, %v", ost.Bindings, err)
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
	if err := e.c.DeleteTopic(ctx, "in"); err != nil {
		t.Fatalf("delete topic after unbind: %v", err)
	}
	if ts, _ := e.c.ListTopics(ctx); len(ts) != 2 || ts[1].Name != "acme.in.dlq" || ts[1].Owner != "acme" {
		t.Fatalf("topics after delete: %+v", ts)
	}
	// A name is always taken in the creator's namespace.
	if ot, err := e.other.CreateTopic(ctx, "acme.in", 1); err != nil || ot.Name != "other.acme.in" {
		t.Fatalf("other's create of acme.in = %+v, %v", ot, err)
	}
}

// A topic name the broker refuses (one that collides with another once
// '.' and '_' are confused, as Kafka's metric names do) is the caller's
// mistake: 400, not 502. Found by FuzzRequestBodies.
func TestTopicRefusedByBroker(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	if _, err := e.c.CreateTopic(ctx, "x_y", 1); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.CreateTopic(ctx, "x.y", 1)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != 400 {
		t.Fatalf("a colliding topic name: %v, want 400", err)
	}
}
