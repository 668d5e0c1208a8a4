package api_test

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/ember-run/ember/engine/api/wire"
)

// TestTenantMatrix calls every route as {no key, a bad key, another
// tenant, the owner, the administrator} and checks the status, and that
// whatever the other tenant did left the owner's things as they were.
func TestTenantMatrix(t *testing.T) {
	ctx := context.Background()
	e := setup(t)
	zipA := goodZip(t, "#!/bin/sh\necho a\n")
	f, err := e.c.DeployFunction(ctx, "f", wire.FunctionConfig{}, bytes.NewReader(zipA))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.CreateTopic(ctx, "in", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PutBinding(ctx, wire.Binding{ID: "b", Function: "f", Topic: "in"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CreateTenant(ctx, "carol"); err != nil {
		t.Fatal(err)
	}

	zipB := goodZip(t, "#!/bin/sh\necho b\n")
	deploy := func() (string, io.Reader) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		cw, _ := mw.CreateFormField("config")
		_, _ = cw.Write([]byte(`{"memory_mb":256}`))
		fw, _ := mw.CreateFormFile("code", "f.zip")
		_, _ = fw.Write(zipB)
		_ = mw.Close()
		return mw.FormDataContentType(), &buf
	}
	js := func(s string) func() (string, io.Reader) {
		return func() (string, io.Reader) { return "application/json", strings.NewReader(s) }
	}
	const (
		none = iota
		bad
		other
		owner
		admin
	)
	who := []string{"no key", "bad key", "other tenant", "owner", "admin"}
	keys := []string{"", "ek_notarealkey0000000000000000000000000000000", e.keys["other"], e.keys["acme"], e.keys["admin"]}

	routes := []struct {
		method, path string
		body         func() (string, io.Reader)
		want         [5]int
	}{
		{"GET", "/healthz", nil, [5]int{200, 200, 200, 200, 200}},
		{"GET", "/metrics", nil, [5]int{401, 401, 403, 403, 200}},
		{"GET", "/v1/whoami", nil, [5]int{401, 401, 200, 200, 200}},
		{"GET", "/v1/tenants", nil, [5]int{401, 401, 403, 403, 200}},
		{"POST", "/v1/tenants", js(`{"name":"dave"}`), [5]int{401, 401, 403, 403, 201}},
		{"POST", "/v1/tenants/carol/keys", nil, [5]int{401, 401, 403, 403, 200}},
		{"DELETE", "/v1/tenants/carol/keys", nil, [5]int{401, 401, 403, 403, 204}},
		{"GET", "/v1/functions", nil, [5]int{401, 401, 200, 200, 403}},
		{"GET", "/v1/functions/f", nil, [5]int{401, 401, 404, 200, 403}},
		{"POST", "/v1/functions/f/versions", nil, [5]int{401, 401, 404, 200, 403}},
		{"POST", "/v1/functions/f/invoke", js(`{}`), [5]int{401, 401, 404, 200, 403}},
		{"GET", "/v1/functions/f/invoke", nil, [5]int{404, 404, 404, 404, 404}},
		// The other tenant's PUT makes its own f; acme's stays (checked below).
		{"PUT", "/v1/functions/g", deploy, [5]int{401, 401, 200, 200, 403}},
		{"GET", "/v1/bindings", nil, [5]int{401, 401, 200, 200, 403}},
		{"GET", "/v1/bindings/b", nil, [5]int{401, 401, 404, 200, 403}},
		// Binding acme's topic: as if it did not exist.
		{"PUT", "/v1/bindings/b", js(`{"function":"f","topic":"acme.in"}`), [5]int{401, 401, 404, 200, 403}},
		{"GET", "/v1/topics", nil, [5]int{401, 401, 200, 200, 200}},
		{"POST", "/v1/topics", js(`{"name":"t2","partitions":1}`), [5]int{401, 401, 201, 201, 403}},
		{"POST", "/v1/topics/acme.in/records", js(`{"records":[{"value":"x"}]}`), [5]int{401, 401, 404, 200, 403}},
		{"PUT", "/v1/topics/acme.in/grants/carol", js(`{"access":"consume"}`), [5]int{401, 401, 403, 403, 204}},
		{"DELETE", "/v1/topics/acme.in/grants/carol", nil, [5]int{401, 401, 403, 403, 204}},
		{"GET", "/v1/status", nil, [5]int{401, 401, 200, 200, 200}},
		{"GET", "/v1/code/" + f.CodeDigest, nil, [5]int{401, 401, 404, 200, 200}},
		// Deleting someone else's things is a no-op success, like deleting a
		// missing one: it must not reveal that they exist (checked below).
		{"DELETE", "/v1/topics/acme.in", nil, [5]int{401, 401, 204, 409, 403}},
		{"DELETE", "/v1/bindings/b", nil, [5]int{401, 401, 204, 204, 403}},
		{"DELETE", "/v1/functions/f", nil, [5]int{401, 401, 204, 204, 403}},
	}
	var ownerDeletes []int
	for i, rt := range routes {
		for p := none; p <= admin; p++ {
			if rt.method == "DELETE" && p == owner {
				ownerDeletes = append(ownerDeletes, i) // once the others have tried
				continue
			}
			code := call(t, e.srv.URL, rt.method, rt.path, keys[p], rt.body)
			if code != rt.want[p] {
				t.Errorf("%s %s as %s: %d, want %d", rt.method, rt.path, who[p], code, rt.want[p])
			}
		}
		// Whatever the others did, acme's things are as they were.
		got, err := e.c.GetFunction(ctx, "f")
		if err != nil || got.CodeDigest != f.CodeDigest {
			t.Fatalf("after %s %s: acme's f = %+v, %v", rt.method, rt.path, got, err)
		}
		if b, err := e.c.GetBinding(ctx, "b"); err != nil || b.Topic != "acme.in" {
			t.Fatalf("after %s %s: acme's binding = %+v, %v", rt.method, rt.path, b, err)
		}
	}
	// The owner's deletes, in order: the topic is still bound (409), then
	// the binding and the function go.
	for _, i := range ownerDeletes {
		rt := routes[i]
		if code := call(t, e.srv.URL, rt.method, rt.path, keys[owner], rt.body); code != rt.want[owner] {
			t.Errorf("%s %s as owner: %d, want %d", rt.method, rt.path, code, rt.want[owner])
		}
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+e.scrape)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `ember_api_requests_total{code="401",route="GET /v1/functions"} 2`) {
		t.Fatalf("scrape with the metrics token: %d\n%.2000s", resp.StatusCode, body)
	}
	for _, k := range keys[2:] {
		if strings.Contains(string(body), k) {
			t.Fatal("an API key leaked into the metrics")
		}
	}
}

func call(t *testing.T, base, method, path, key string, body func() (string, io.Reader)) int {
	t.Helper()
	var rd io.Reader
	ct := ""
	if body != nil {
		ct, rd = body()
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}
