package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/engine/registry"
)

func TestMapResult(t *testing.T) {
	for _, c := range []struct {
		name, payload string
		status        int
		body, ctype   string
		cookies       int
		err           string
	}{
		{"response object", `{"statusCode":201,"headers":{"X-A":"1","Content-Type":"text/plain"},"body":"hi","cookies":["a=1","b=2"]}`, 201, "hi", "text/plain", 2, ""},
		{"base64 body", `{"statusCode":200,"body":"AAEC","isBase64Encoded":true,"headers":{"content-type":"application/octet-stream"}}`, 200, "\x00\x01\x02", "application/octet-stream", 0, ""},
		{"inferred: any JSON", `{"hello":"world"}`, 200, `{"hello":"world"}`, "application/json", 0, ""},
		{"inferred: a string", `"plain"`, 200, `"plain"`, "application/json", 0, ""},
		{"status out of range", `{"statusCode":99}`, 0, "", "", 0, "100 to 599"},
		{"status not a number", `{"statusCode":"200"}`, 0, "", "", 0, "integer"},
		{"bad base64", `{"statusCode":200,"body":"!!","isBase64Encoded":true}`, 0, "", "", 0, "base64"},
		{"not JSON", `hello`, 0, "", "", 0, "not JSON"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := mapResult([]byte(c.payload))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || r.status != c.status || string(r.body) != c.body || r.header.Get("Content-Type") != c.ctype || len(r.header.Values("Set-Cookie")) != c.cookies {
				t.Fatalf("got %d %q %v (%v)", r.status, r.body, r.header, err)
			}
		})
	}
}

func TestIsText(t *testing.T) {
	for ct, want := range map[string]bool{"": true, "text/plain; charset=utf-8": true, "application/json": true,
		"application/vnd.api+json": true, "application/octet-stream": false, "image/png": false, "bad;;": false} {
		if got := isText(ct, []byte("abc")); got != want {
			t.Errorf("isText(%q) = %v", ct, got)
		}
	}
	if isText("text/plain", []byte{0xff, 0xfe}) {
		t.Error("invalid UTF-8 sent as text")
	}
}

func TestTemplates(t *testing.T) {
	m := &registry.Mapping{Request: json.RawMessage(`{"a": "$path.id", "b": ["$query.q", "$$x"], "c": {"d": "$body.x.y"}, "e": 5}`),
		Response: &registry.ResponseMapping{Body: json.RawMessage(`{"r": "$result.v", "all": "$result"}`)}}
	if err := ValidateMapping(m); err != nil {
		t.Fatal(err)
	}
	r, _ := http.NewRequest("POST", "http://gw/t/o/5?q=z", nil)
	q := &request{r: r, route: registry.Route{Mapping: m}, params: map[string]string{"id": "5"}, body: []byte(`{"x":{"y":true}}`)}
	got, err := q.customPayload()
	if err != nil || string(got) != `{"a":"5","b":["z","$x"],"c":{"d":true},"e":5}` {
		t.Fatalf("request template: %s %v", got, err)
	}
	resp, err := customResponse(m.Response, []byte(`{"v":[1,2]}`))
	if err != nil || resp.status != 200 || string(resp.body) != `{"all":{"v":[1,2]},"r":[1,2]}` {
		t.Fatalf("response template: %d %s %v", resp.status, resp.body, err)
	}
	for _, bad := range []*registry.Mapping{
		{Request: json.RawMessage(`{"a": "$secret"}`)},
		{Request: json.RawMessage(`{`)},
		{Response: &registry.ResponseMapping{StatusCode: 42}},
		{Response: &registry.ResponseMapping{Body: json.RawMessage(`{"a": "$body"}`)}},
	} {
		if err := ValidateMapping(bad); err == nil {
			t.Errorf("mapping %+v accepted", bad)
		}
	}
}

func TestParamNames(t *testing.T) {
	if got := strings.Join(paramNames("/a/{id}/b/{rest+}"), ","); got != "id,rest" {
		t.Fatal(got)
	}
}

// staticRoutes is a fixed route table.
type staticRoutes []registry.Route

func (s staticRoutes) RouteTable(_ context.Context, tenant string) ([]registry.Route, uint64, error) {
	var out []registry.Route
	for _, r := range s {
		if r.Tenant == tenant {
			out = append(out, r)
		}
	}
	return out, 1, nil
}

// recordingInvoker answers every invocation with a fixed response and keeps the events.
type recordingInvoker struct {
	events []events.APIGatewayV2HTTPRequest
}

func (ri *recordingInvoker) Invoke(_ context.Context, inv *invoke.Invocation) (invoke.Result, error) {
	var ev events.APIGatewayV2HTTPRequest
	_ = json.Unmarshal(inv.Payload, &ev)
	ri.events = append(ri.events, ev)
	return invoke.Result{Status: invoke.StatusOK, Payload: []byte(`{"statusCode":200,"body":"x"}`)}, nil
}

// A greedy route at the root is the tenant's catch-all; the mux's own
// redirects stay inside the tenant; unclean paths are not redirected out
// of it; tenants without routes are not cached.
func TestTableEdges(t *testing.T) {
	inv := &recordingInvoker{}
	g, err := New(staticRoutes{
		{Tenant: "a", Method: "ANY", Path: "/{proxy+}", Function: "f", Public: true},
		{Tenant: "b", Method: "GET", Path: "/files/{rest+}", Function: "f", Public: true},
	}, nil, inv, Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(p string) *http.Response {
		resp, err := noRedirect.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := get("/a/x/y"); resp.StatusCode != 200 || len(inv.events) != 1 || inv.events[0].PathParameters["proxy"] != "x/y" {
		t.Fatalf("ANY /{proxy+}: %d %+v", resp.StatusCode, inv.events)
	}
	if resp := get("/b/files"); resp.StatusCode/100 != 3 || resp.Header.Get("Location") != "/b/files/" {
		t.Fatalf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := get("/b/files/../../a/x"); resp.StatusCode != 404 && resp.StatusCode != 200 {
		t.Fatalf("dot segments: %d", resp.StatusCode)
	}
	if resp := get("/b/x//y"); resp.StatusCode != 404 {
		t.Fatalf("unclean path: %d", resp.StatusCode)
	}
	get("/nobody/x")
	if _, cached := g.tables["nobody"]; cached {
		t.Fatal("a tenant without routes was cached")
	}
}
