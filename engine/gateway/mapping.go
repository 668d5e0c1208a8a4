package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/ember-run/ember/engine/registry"
)

// A custom mapping's templates are JSON values in which every string that
// starts with "$" is an expression, replaced by the value it names (null
// when absent); "$$..." is a literal "$...". In the request template:
//
//	$method  $path  $tenant  $requestId
//	$path.NAME    a path parameter
//	$query.NAME   a query parameter (first value)
//	$header.NAME  a header (case-insensitive; values joined with ",")
//	$body         the body: its JSON value when it is JSON, else a string
//	$body.A.B     a field of a JSON body
//
// In the response Body template: $result (the function's result, its JSON
// value) and $result.A.B. Example: request {"orderId": "$path.id",
// "verbose": "$query.verbose", "item": "$body.item"}, response
// {"StatusCode": 201, "Body": {"created": "$result.id"}}.

// ValidateMapping checks a route's mapping templates.
func ValidateMapping(m *registry.Mapping) error {
	if m == nil {
		return nil
	}
	if len(m.Request) > 0 {
		if err := checkTemplate(m.Request, "request", []string{"method", "path", "tenant", "requestId", "query", "header", "body"}); err != nil {
			return err
		}
	}
	if rm := m.Response; rm != nil {
		if rm.StatusCode != 0 && (rm.StatusCode < 100 || rm.StatusCode > 599) {
			return fmt.Errorf("mapping: response status %d: want 100 to 599: %w", rm.StatusCode, registry.ErrInvalid)
		}
		if len(rm.Body) > 0 {
			if err := checkTemplate(rm.Body, "response body", []string{"result"}); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkTemplate(t json.RawMessage, what string, roots []string) error {
	var v any
	if err := json.Unmarshal(t, &v); err != nil {
		return fmt.Errorf("mapping: %s template is not JSON: %v: %w", what, err, registry.ErrInvalid)
	}
	var bad []string
	walk(v, func(s string) any {
		if strings.HasPrefix(s, "$") && !strings.HasPrefix(s, "$$") {
			root, _, _ := strings.Cut(s[1:], ".")
			ok := false
			for _, r := range roots {
				ok = ok || root == r
			}
			if !ok {
				bad = append(bad, s)
			}
		}
		return s
	})
	if len(bad) > 0 {
		return fmt.Errorf("mapping: %s template: unknown expressions %s (want $%s...): %w", what, strings.Join(bad, ", "), strings.Join(roots, ", $"), registry.ErrInvalid)
	}
	return nil
}

// walk rebuilds v with every string leaf replaced by f's value.
func walk(v any, f func(string) any) any {
	switch x := v.(type) {
	case string:
		return f(x)
	case []any:
		for i := range x {
			x[i] = walk(x[i], f)
		}
		return x
	case map[string]any:
		for k := range x {
			x[k] = walk(x[k], f)
		}
		return x
	}
	return v
}

// render applies template t with expression lookup.
func render(t json.RawMessage, lookup func(root, rest string) any) ([]byte, error) {
	var v any
	if err := json.Unmarshal(t, &v); err != nil {
		return nil, err
	}
	v = walk(v, func(s string) any {
		switch {
		case strings.HasPrefix(s, "$$"):
			return s[1:]
		case strings.HasPrefix(s, "$"):
			root, rest, _ := strings.Cut(s[1:], ".")
			return lookup(root, rest)
		}
		return s
	})
	return json.Marshal(v)
}

// field follows a dotted path into a JSON value.
func field(v any, path string) any {
	if path == "" {
		return v
	}
	for _, k := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// jsonOrString is a body's JSON value, or the body as a string.
func jsonOrString(b []byte) any {
	var v any
	if len(bytes.TrimSpace(b)) > 0 && json.Unmarshal(b, &v) == nil {
		return v
	}
	return string(b)
}

// customPayload renders the request template of q's route.
func (q *request) customPayload() ([]byte, error) {
	body := jsonOrString(q.body)
	return render(q.route.Mapping.Request, func(root, rest string) any {
		switch root {
		case "method":
			return q.r.Method
		case "path":
			if rest == "" {
				return q.rawPath
			}
			if v, ok := q.params[rest]; ok {
				return v
			}
		case "tenant":
			return q.route.Tenant
		case "requestId":
			return q.id
		case "query":
			if vs, ok := q.r.URL.Query()[rest]; ok && len(vs) > 0 {
				return vs[0]
			}
		case "header":
			if vs := q.r.Header.Values(rest); len(vs) > 0 && !(strings.EqualFold(rest, "authorization") && !q.route.Public) {
				return strings.Join(vs, ",")
			}
		case "body":
			return field(body, rest)
		}
		return nil
	})
}

// customResponse maps a result with the route's response mapping.
func customResponse(rm *registry.ResponseMapping, payload []byte) (httpResponse, error) {
	out := httpResponse{status: http.StatusOK, header: http.Header{}, body: payload}
	if rm.StatusCode != 0 {
		out.status = rm.StatusCode
	}
	for k, v := range rm.Headers {
		out.header.Set(k, v)
	}
	if len(rm.Body) > 0 {
		var result any
		if err := json.Unmarshal(payload, &result); err != nil {
			return httpResponse{}, fmt.Errorf("the function's result is not JSON: %w", err)
		}
		b, err := render(rm.Body, func(root, rest string) any {
			if root == "result" {
				return field(result, rest)
			}
			return nil
		})
		if err != nil {
			return httpResponse{}, err
		}
		out.body = b
	}
	if out.header.Get("Content-Type") == "" {
		out.header.Set("Content-Type", "application/json")
	}
	return out, nil
}
