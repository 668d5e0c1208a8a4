package main

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/consumers/embedded"
	"github.com/ember-run/ember/consumers/kafkatest"
	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/codestore"
	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
	"github.com/ember-run/ember/engine/tenants"
	"github.com/ember-run/ember/internal/apikafka"
	"github.com/ember-run/ember/internal/testenv"
)

// echo resolves through the real registry and echoes; "fail" is a function error.
type echo struct{ reg *registry.Registry }

func (e echo) Invoke(ctx context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	v, err := e.reg.Resolve(ctx, inv.Tenant, inv.Function, inv.Qualifier)
	if err != nil {
		return invoke.Result{}, err
	}
	if string(inv.Payload) == "fail" {
		return invoke.Result{Status: invoke.StatusFunctionError, Payload: []byte(`{"errorMessage":"no"}`), Version: v.Version,
			Start: invoke.StartCold, LogTail: []byte("panic: no")}, nil
	}
	return invoke.Result{Status: invoke.StatusOK, Payload: inv.Payload, Version: v.Version, Start: invoke.StartHot}, nil
}

func TestCLI(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	reg, _ := registry.New(rdb)
	code, _ := codestore.New(codestore.Config{Dir: t.TempDir()})
	adminKey := tenants.NewKey()
	ten, _ := tenants.New(rdb, tenants.WithAdminKey(adminKey))
	cluster := kafkatest.Start(t, embedded.Config{})
	topics, err := consumers.NewTopics(cluster.Brokers, consumers.Conn{})
	if err != nil {
		t.Fatal(err)
	}
	defer topics.Close()
	s, err := api.New(api.Config{}, api.Deps{Tenants: ten, Registry: reg, Code: code, Topics: topics,
		Invoker: echo{reg}, Producer: apikafka.Producer{Topics: topics}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	t.Setenv("EMBER_API", srv.URL)
	t.Setenv("EMBER_API_KEY", "")
	cfgPath := filepath.Join(t.TempDir(), "ember", "config.json")
	t.Setenv("EMBER_CONFIG", cfgPath)

	zipPath := filepath.Join(t.TempDir(), "fn.zip")
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	fh := &zip.FileHeader{Name: "bootstrap"}
	fh.SetMode(0o755)
	w, _ := zw.CreateHeader(fh)
	_, _ = w.Write([]byte("#!/bin/sh\n"))
	_ = zw.Close()
	if err := os.WriteFile(zipPath, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(stdin string, args ...string) (string, string, error) {
		root := newRoot()
		var out, errb bytes.Buffer
		root.SetArgs(args)
		root.SetIn(strings.NewReader(stdin))
		root.SetOut(&out)
		root.SetErr(&errb)
		err := root.ExecuteContext(context.Background())
		return out.String(), errb.String(), err
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, errs, err := run(stdin, args...)
		if err != nil {
			t.Fatalf("ember %v: %v\n%s", args, err, errs)
		}
		return out
	}
	// No key: refused, and the error says so.
	if _, _, err := run("", "functions"); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("without a key: %v", err)
	}
	// The administrator creates tenant acme; acme logs in with its key
	// from stdin, and the config file (0600) remembers it.
	out := must("", "--api-key", adminKey, "tenant", "create", "acme")
	key := ""
	for _, l := range strings.Split(out, "\n") {
		if k, ok := strings.CutPrefix(l, "api key: "); ok {
			key = k
		}
	}
	if !strings.Contains(out, "created tenant acme") || !strings.HasPrefix(key, tenants.KeyPrefix) {
		t.Fatalf("tenant create: %s", out)
	}
	if out := must("", "--api-key", adminKey, "tenant", "list"); !strings.Contains(out, "acme") {
		t.Fatalf("tenant list: %s", out)
	}
	if _, _, err := run("", "--api-key", key, "tenant", "list"); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("tenant list as a tenant: %v", err)
	}
	if out := must(key+"\n", "login", "--api-key-stdin"); !strings.Contains(out, "as tenant acme") {
		t.Fatalf("login: %s", out)
	}
	if st, err := os.Stat(cfgPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v, %v", st, err)
	}
	if b, _ := os.ReadFile(cfgPath); !strings.Contains(string(b), key) || !strings.Contains(string(b), srv.URL) {
		t.Fatalf("config file holds %s", b)
	}
	if out := must("", "topic", "create", "in", "--partitions", "2"); !strings.Contains(out, "created topic acme.in (2 partitions)") {
		t.Fatalf("topic create: %s", out)
	}
	out = must("", "deploy", "echo", "--zip", zipPath, "--memory", "256", "--timeout", "10s", "--env", "A=1")
	if !strings.Contains(out, "deployed echo") || !strings.Contains(out, "256 MB") || !strings.Contains(out, "timeout 10s") {
		t.Fatalf("deploy: %s", out)
	}
	if out := must("", "publish", "echo"); !strings.Contains(out, "version 1") {
		t.Fatalf("publish: %s", out)
	}
	if out := must("", "functions"); !strings.Contains(out, "echo") || !strings.Contains(out, "256") {
		t.Fatalf("functions: %s", out)
	}
	if out := must("", "describe", "echo"); !strings.Contains(out, "A=1") || !strings.Contains(out, "Versions:    1") {
		t.Fatalf("describe: %s", out)
	}
	out, errs, err := run("", "invoke", "echo", "--payload", `{"x":1}`)
	if err != nil || strings.TrimSpace(out) != `{"x":1}` || !strings.Contains(errs, "status=ok") {
		t.Fatalf("invoke: %q %q %v", out, errs, err)
	}
	if out := must(`{"stdin":true}`, "invoke", "echo", "--qualifier", "1"); strings.TrimSpace(out) != `{"stdin":true}` {
		t.Fatalf("invoke stdin: %q", out)
	}
	// Aliases: a 25% split, changed, ended; invokes name the version run.
	must("", "deploy", "echo", "--zip", zipPath, "--memory", "256", "--timeout", "10s", "--env", "A=2")
	if out := must("", "publish", "echo"); !strings.Contains(out, "version 2") {
		t.Fatalf("publish 2: %s", out)
	}
	if _, _, err := run("", "alias", "create", "live", "--function", "echo", "--version", "1", "--extra", "2"); err == nil {
		t.Fatal("--extra without a weight accepted")
	}
	if _, _, err := run("", "alias", "create", "live", "--function", "echo", "--version", "1", "--extra", "3=0.1"); !registry.IsNotFound(err) {
		t.Fatalf("alias to a missing version: %v", err)
	}
	if out := must("", "alias", "create", "live", "--function", "echo", "--version", "1", "--extra", "2=0.25"); !strings.Contains(out, "-> 1 (75%), 2 (25%)") {
		t.Fatalf("alias create: %s", out)
	}
	if out := must("", "alias", "update", "live", "--function", "echo", "--extra", "2=0.5", "--description", "canary"); !strings.Contains(out, "-> 1 (50%), 2 (50%)") {
		t.Fatalf("alias update: %s", out)
	}
	if out := must("", "alias", "list", "--function", "echo"); !strings.Contains(out, "live") || !strings.Contains(out, "canary") {
		t.Fatalf("alias list: %s", out)
	}
	if out := must("", "alias", "update", "live", "--function", "echo", "--version", "2", "--no-extra"); !strings.Contains(out, "-> 2\n") {
		t.Fatalf("alias update --no-extra: %s", out)
	}
	if _, errs, err := run("", "invoke", "echo", "--qualifier", "live", "--payload", "{}"); err != nil || !strings.Contains(errs, "version=2") {
		t.Fatalf("invoke through the alias: %q %v", errs, err)
	}
	must("", "alias", "delete", "live", "--function", "echo")
	if _, _, err := run("", "invoke", "echo", "--qualifier", "live", "--payload", "{}"); !registry.IsNotFound(err) {
		t.Fatalf("invoke through a deleted alias: %v", err)
	}
	_, errs, err = run("", "invoke", "echo", "--payload", "fail")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(errs, "status=function_error") || !strings.Contains(errs, "panic: no") {
		t.Fatalf("failing invoke: %q %v", errs, err)
	}
	if _, _, err := run("", "bind", "b1", "--topic", "in", "--function", "nope"); !registry.IsNotFound(err) {
		t.Fatalf("bind to unknown function: %v", err)
	}
	if out := must("", "bind", "b1", "--topic", "in", "--function", "echo", "--batch-size", "5", "--from", "earliest"); !strings.Contains(out, "group ember.acme.b1") {
		t.Fatalf("bind: %s", out)
	}
	if out := must("", "bindings"); !strings.Contains(out, "b1") || !strings.Contains(out, "trim_horizon") {
		t.Fatalf("bindings: %s", out)
	}
	if out := must("", "bind", "b2", "--topic", "in", "--function", "echo", "--ordering", "key", "--max-concurrency", "4",
		"--max-retry-attempts", "-1", "--max-record-age", "2m", "--filter", `{"value":{"kind":["order"]}}`,
		"--from", "2026-01-02T03:04:05Z"); !strings.Contains(out, "ordering key") {
		t.Fatalf("bind with settings: %s", out)
	}
	if out := must("", "bindings"); !strings.Contains(out, "at_timestamp") || !strings.Contains(out, "-1") {
		t.Fatalf("bindings: %s", out)
	}
	if _, _, err := run("", "bind", "b3", "--topic", "in", "--function", "echo", "--max-retry-attempts", "-1"); !registry.IsInvalid(err) {
		t.Fatalf("retry forever without a max age: %v", err)
	}
	if out := must("", "binding", "rewind", "b2", "--offsets", "0:3,1:0"); !strings.Contains(out, "rewind") {
		t.Fatalf("rewind: %s", out)
	}
	if _, _, err := run("", "binding", "rewind", "b2", "--offsets", "zero"); err == nil {
		t.Fatal("rewind to bad offsets accepted")
	}
	must("", "unbind", "b2")
	if out := must("a\nb\nc\n", "produce", "in", "--key", "k"); !strings.Contains(out, "produced 3") {
		t.Fatalf("produce stdin: %s", out)
	}
	if out := must("", "produce", "in", "x", "y"); !strings.Contains(out, "produced 2") {
		t.Fatalf("produce args: %s", out)
	}
	if recs := cluster.ReadAll("acme.in"); len(recs) != 5 {
		t.Fatalf("read back %d records, want 5", len(recs))
	}
	if out := must("", "topic", "list"); !strings.Contains(out, "acme.in ") || !strings.Contains(out, "acme.in.dlq") {
		t.Fatalf("topic list: %s", out)
	}
	if out := must("", "status"); !strings.Contains(out, "AGENTS (0)") || !strings.Contains(out, "b1") {
		t.Fatalf("status: %s", out)
	}
	if _, _, err := run("", "delete", "echo"); !registry.IsConflict(err) {
		t.Fatalf("delete bound function: %v", err)
	}
	must("", "unbind", "b1")
	must("", "delete", "echo")
	// A rotated key stops working; a bad key is never echoed back.
	if out := must("", "--api-key", adminKey, "tenant", "rotate", "acme"); !strings.Contains(out, "api key: ") {
		t.Fatalf("rotate: %s", out)
	}
	if _, _, err := run("", "functions"); !errors.Is(err, client.ErrUnauthorized) || strings.Contains(err.Error(), key) {
		t.Fatalf("old key after rotate: %v", err)
	}
}
