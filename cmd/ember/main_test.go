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
	"sync"
	"testing"

	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/codestore"
	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
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

type sink struct {
	mu   sync.Mutex
	recs []api.Record
}

func (s *sink) Produce(_ context.Context, _ string, recs []api.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, recs...)
	return nil
}

func TestCLI(t *testing.T) {
	rdb, _ := testenv.Redis(t)
	reg, _ := registry.New(rdb)
	code, _ := codestore.New(codestore.Config{Dir: t.TempDir()})
	pr := &sink{}
	s, err := api.New(api.Config{Token: "tok"}, api.Deps{Registry: reg, Code: code, Invoker: echo{reg}, Producer: pr})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	t.Setenv("EMBER_API", srv.URL)
	t.Setenv("EMBER_TOKEN", "tok")

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
		root.SetArgs(append([]string{"--tenant", "acme"}, args...))
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
	out := must("", "deploy", "echo", "--zip", zipPath, "--memory", "256", "--timeout", "10s", "--env", "A=1")
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
	_, errs, err = run("", "invoke", "echo", "--payload", "fail")
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(errs, "status=function_error") || !strings.Contains(errs, "panic: no") {
		t.Fatalf("failing invoke: %q %v", errs, err)
	}
	if _, _, err := run("", "bind", "b1", "--topic", "in", "--function", "nope"); !registry.IsNotFound(err) {
		t.Fatalf("bind to unknown function: %v", err)
	}
	if out := must("", "bind", "b1", "--topic", "in", "--function", "echo", "--batch-size", "5", "--from", "earliest"); !strings.Contains(out, "group ember-b1") {
		t.Fatalf("bind: %s", out)
	}
	if out := must("", "bindings"); !strings.Contains(out, "b1") || !strings.Contains(out, "earliest") {
		t.Fatalf("bindings: %s", out)
	}
	if out := must("a\nb\nc\n", "produce", "in", "--key", "k"); !strings.Contains(out, "produced 3") {
		t.Fatalf("produce stdin: %s", out)
	}
	if out := must("", "produce", "in", "x", "y"); !strings.Contains(out, "produced 2") {
		t.Fatalf("produce args: %s", out)
	}
	if len(pr.recs) != 5 || string(pr.recs[0].Key) != "k" || string(pr.recs[2].Value) != "c" || string(pr.recs[4].Value) != "y" {
		t.Fatalf("records %+v", pr.recs)
	}
	if out := must("", "status"); !strings.Contains(out, "AGENTS (0)") || !strings.Contains(out, "b1") {
		t.Fatalf("status: %s", out)
	}
	if _, _, err := run("", "delete", "echo"); !registry.IsConflict(err) {
		t.Fatalf("delete bound function: %v", err)
	}
	must("", "unbind", "b1")
	must("", "delete", "echo")
	t.Setenv("EMBER_TOKEN", "badtokenXYZ")
	if _, _, err := run("", "functions"); err == nil || strings.Contains(err.Error(), "badtokenXYZ") {
		t.Fatalf("bad token: %v", err)
	}
}
