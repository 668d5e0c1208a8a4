package api_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"

	"golang.org/x/net/http/httpguts"

	"github.com/ember-run/ember/engine/api/wire"
)

// FuzzRequestBodies sends arbitrary bodies (and content types) to every
// route that decodes one, as the owner or the administrator: the answer is
// a 2xx or a 4xx, never a 5xx or a panic, and the server keeps serving.
func FuzzRequestBodies(f *testing.F) {
	e := setup(f)
	ctx := context.Background()
	if _, err := e.c.DeployFunction(ctx, "f", wire.FunctionConfig{}, bytes.NewReader(goodZip(f, "x"))); err != nil {
		f.Fatal(err)
	}
	if _, err := e.c.CreateTopic(ctx, "in", 1); err != nil {
		f.Fatal(err)
	}
	routes := []struct {
		method, path string
		admin        bool
	}{
		{"PUT", "/v1/bindings/b", false},
		{"POST", "/v1/topics", false},
		{"POST", "/v1/topics/in/records", false},
		{"PUT", "/v1/functions/g", false},
		{"POST", "/v1/functions/f/invoke", false},
		{"POST", "/v1/tenants", true},
		{"PUT", "/v1/topics/acme.in/grants/other", true},
	}
	f.Add(uint8(0), "application/json", []byte(`{"function":"f","topic":"in","batch_size":5}`))
	f.Add(uint8(1), "application/json", []byte(`{"name":"x","partitions":2}`))
	f.Add(uint8(2), "application/json", []byte(`{"records":[{"key":"k","value":"v","headers":{"h":"1"}}]}`))
	f.Add(uint8(3), "multipart/form-data; boundary=B", []byte("--B\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\n{}\r\n--B--\r\n"))
	f.Add(uint8(4), "application/json", []byte(`{"x":1}`))
	f.Add(uint8(5), "application/json", []byte(`{"name":"zed"}`))
	f.Add(uint8(6), "application/json", []byte(`{"access":"consume"}`))
	f.Add(uint8(0), "application/json", []byte(`{"batch_window_ms":-1,"group_id":"x"}`))
	f.Add(uint8(2), "application/json", []byte(`{"records":[]}`))
	f.Fuzz(func(t *testing.T, route uint8, ct string, body []byte) {
		rt := routes[int(route)%len(routes)]
		req, err := http.NewRequest(rt.method, e.srv.URL+rt.path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ct != "" && httpguts.ValidHeaderFieldValue(ct) {
			req.Header.Set("Content-Type", ct)
		}
		key := e.keys["acme"]
		if rt.admin {
			key = e.keys["admin"]
		}
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", rt.method, rt.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%s %s with %q (%s): %d", rt.method, rt.path, body, ct, resp.StatusCode)
		}
		if err := e.c.Health(ctx); err != nil {
			t.Fatalf("the server stopped serving: %v", err)
		}
	})
}
