package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
)

// httpEcho is what examples/http-echo answers with.
type httpEcho struct {
	Method     string            `json:"method"`
	RouteKey   string            `json:"routeKey"`
	RawPath    string            `json:"rawPath"`
	RawQuery   string            `json:"rawQuery"`
	PathParams map[string]string `json:"pathParameters"`
	Query      map[string]string `json:"query"`
	Headers    map[string]string `json:"headers"`
	Cookies    []string          `json:"cookies"`
	Body       []byte            `json:"body"`
	WasBase64  bool              `json:"wasBase64"`
	Tenant     string            `json:"tenant"`
}

// The gateway end to end, with an unmodified aws-lambda-go handler of
// APIGatewayV2HTTPRequest: path parameters, query strings, headers,
// cookies and binary bodies both ways; 401, 404, 413, 502, 504; CORS; a
// custom mapping.
func TestGateway(t *testing.T) {
	s := newStack(t, "m128=2")
	s.deploy("web", "http-echo", wire.FunctionConfig{TimeoutMs: 10000})
	for _, rt := range []wire.Route{
		{Method: "GET", Path: "/orders/{id}", Function: "web", CORS: &wire.CORS{AllowOrigins: []string{"https://app.example"}, MaxAgeSeconds: 60}},
		{Method: "POST", Path: "/files/{path+}", Function: "web", Public: true, MaxBodyBytes: 1024},
		{Method: "GET", Path: "/pub", Function: "web", Public: true},
		{Method: "GET", Path: "/slow", Function: "web", Public: true, TimeoutMs: 1000},
		{Method: "POST", Path: "/mapped/{id}", Function: "web", Public: true, Mapping: &wire.Mapping{
			Request: json.RawMessage(`{"rawPath": "$path", "pathParameters": {"id": "$path.id"}, "queryStringParameters": {"x": "$query.x"}, "body": "$body.item", "headers": {"lit": "$$literal"}}`),
			Response: &wire.ResponseMapping{StatusCode: 201, Headers: map[string]string{"X-Mapped": "1"},
				Body: json.RawMessage(`{"upstream": "$result.statusCode", "echo": "$result.body"}`)}}},
	} {
		out, err := s.client.PutRoute(s.ctx(), rt)
		if err != nil {
			t.Fatalf("route %s %s: %v", rt.Method, rt.Path, err)
		}
		if want := "http://" + s.gateway + "/" + tenant + rt.Path; out.URL != want {
			t.Errorf("route URL %q, want %q", out.URL, want)
		}
	}
	// A route that would match the same requests as another is refused.
	if _, err := s.client.PutRoute(s.ctx(), wire.Route{Method: "GET", Path: "/orders/{other}", Function: "web"}); err == nil || !strings.Contains(err.Error(), "conflict") {
		t.Fatalf("a conflicting route: %v", err)
	}
	base := "http://" + s.gateway + "/" + tenant
	do := func(method, path string, body []byte, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequestWithContext(s.ctx(), method, base+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	decode := func(b []byte) httpEcho {
		t.Helper()
		var e httpEcho
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("echo %q: %v", b, err)
		}
		return e
	}

	// Authenticated route: parameters, query, headers, cookies; the key is not passed on.
	resp, b := do("GET", "/orders/42?a=1&a=2&b=x%20y", nil, map[string]string{"Authorization": "Bearer " + s.tenantKey,
		"X-Test": "v", "Cookie": "c1=1; c2=2", "Origin": "https://app.example"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Echo") != "yes" || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Fatalf("GET /orders/42: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	e := decode(b)
	if e.Method != "GET" || e.RouteKey != "GET /orders/{id}" || e.RawPath != "/orders/42" || e.PathParams["id"] != "42" ||
		e.Query["a"] != "1,2" || e.Query["b"] != "x y" || e.RawQuery != "a=1&a=2&b=x%20y" || e.Headers["x-test"] != "v" ||
		e.Headers["authorization"] != "" || !slices.Equal(e.Cookies, []string{"c1=1", "c2=2"}) || e.Tenant != tenant {
		t.Fatalf("the function received %+v", e)
	}
	other, err := s.admin.CreateTenant(s.ctx(), "gw-other")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"", other.APIKey, s.adminKey} {
		if resp, _ := do("GET", "/orders/42", nil, map[string]string{"Authorization": "Bearer " + key}); resp.StatusCode != 401 {
			t.Errorf("key %.6s...: %d, want 401", key, resp.StatusCode)
		}
	}
	// CORS preflight.
	resp, _ = do("OPTIONS", "/orders/42", nil, map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		resp.Header.Get("Access-Control-Allow-Methods") != "GET" || resp.Header.Get("Access-Control-Max-Age") != "60" {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	// Binary bodies both ways.
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	resp, b = do("POST", "/files/a/b/c.bin", bin, map[string]string{"Content-Type": "application/octet-stream"})
	if e := decode(b); resp.StatusCode != 200 || !bytes.Equal(e.Body, bin) || !e.WasBase64 || e.PathParams["path"] != "a/b/c.bin" {
		t.Fatalf("binary upload: %d %+v", resp.StatusCode, e)
	}
	resp, b = do("POST", "/files/t.txt", []byte(`{"k":"v"}`), map[string]string{"Content-Type": "application/json"})
	if e := decode(b); resp.StatusCode != 200 || string(e.Body) != `{"k":"v"}` || e.WasBase64 {
		t.Fatalf("JSON upload: %d %+v", resp.StatusCode, e)
	}
	resp, b = do("GET", "/pub?binary=300", nil, nil)
	if resp.StatusCode != 200 || len(b) != 300 || b[255] != 255 || b[256] != 0 || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("binary response: %d %v %d bytes", resp.StatusCode, resp.Header, len(b))
	}
	// Status and cookies as the handler set them.
	resp, _ = do("GET", "/pub?status=418&cookie=v", nil, nil)
	if resp.StatusCode != 418 || !slices.Equal(resp.Header.Values("Set-Cookie"), []string{"echo=v; Path=/", "second=2"}) {
		t.Fatalf("status and cookies: %d %v", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}

	// Errors.
	for _, c := range []struct {
		method, path string
		body         []byte
		want         int
	}{
		{"GET", "/nope", nil, 404},
		{"DELETE", "/orders/42", nil, 404},
		{"POST", "/files/big", bytes.Repeat([]byte("x"), 2000), 413},
		{"GET", "/pub?fail=1", nil, 502},
		{"GET", "/pub?bad=1", nil, 502},
		{"GET", "/slow?sleep=3000", nil, 504},
	} {
		start := time.Now()
		if resp, b := do(c.method, c.path, c.body, nil); resp.StatusCode != c.want || !strings.Contains(string(b), `"message"`) {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, resp.StatusCode, b, c.want)
		} else if c.want == 504 && time.Since(start) > 2500*time.Millisecond {
			t.Errorf("504 after %v, the route's timeout is 1s", time.Since(start))
		}
	}
	if resp, err := http.Get("http://" + s.gateway + "/gw-other/orders/1"); err != nil || resp.StatusCode != 404 {
		t.Errorf("another tenant's (empty) route table: %v %v", resp.StatusCode, err)
	}

	// A custom mapping reshapes request and response.
	resp, b = do("POST", "/mapped/7?x=9", []byte(`{"item":"book"}`), map[string]string{"Content-Type": "application/json"})
	var mapped struct {
		Upstream int    `json:"upstream"`
		Echo     string `json:"echo"`
	}
	if err := json.Unmarshal(b, &mapped); err != nil || resp.StatusCode != 201 || resp.Header.Get("X-Mapped") != "1" || mapped.Upstream != 200 {
		t.Fatalf("mapped: %d %v %s (%v)", resp.StatusCode, resp.Header, b, err)
	}
	if e := decode([]byte(mapped.Echo)); e.RawPath != "/mapped/7" || e.PathParams["id"] != "7" || e.Query["x"] != "9" || string(e.Body) != "book" {
		t.Fatalf("the mapped request the function saw: %+v", e)
	}

	// Routes are listed and deleted; a deleted route is gone at once.
	rts, err := s.client.Routes(s.ctx())
	if err != nil || len(rts) != 5 {
		t.Fatalf("routes: %d %v", len(rts), err)
	}
	if err := s.client.DeleteRoute(s.ctx(), "GET", "/pub"); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do("GET", "/pub", nil, nil); resp.StatusCode != 404 {
		t.Errorf("deleted route: %d", resp.StatusCode)
	}
}
