package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// lambdaResponse is the function's result when it is a response object:
// events.APIGatewayV2HTTPResponse, with StatusCode left raw so that a wrong
// type is a clear error.
type lambdaResponse struct {
	StatusCode        json.RawMessage     `json:"statusCode"`
	Headers           map[string]string   `json:"headers"`
	MultiValueHeaders map[string][]string `json:"multiValueHeaders"`
	Body              *string             `json:"body"`
	IsBase64Encoded   bool                `json:"isBase64Encoded"`
	Cookies           []string            `json:"cookies"`
}

// httpResponse is what goes back to the client.
type httpResponse struct {
	status int
	header http.Header
	body   []byte
}

// mapResult maps a function's result as API Gateway's payload format 2.0
// does: a JSON object with statusCode is a response; any other valid JSON
// is a 200 application/json body. An invalid response is an error (502).
func mapResult(payload []byte) (httpResponse, error) {
	out := httpResponse{status: http.StatusOK, header: http.Header{}}
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &probe); err == nil {
			if _, ok := probe["statusCode"]; ok {
				return mapResponseObject(trimmed)
			}
		}
	}
	if len(trimmed) > 0 && !json.Valid(trimmed) {
		return httpResponse{}, fmt.Errorf("the function's result is not JSON")
	}
	out.header.Set("Content-Type", "application/json")
	out.body = payload
	return out, nil
}

func mapResponseObject(b []byte) (httpResponse, error) {
	var lr lambdaResponse
	if err := json.Unmarshal(b, &lr); err != nil {
		return httpResponse{}, fmt.Errorf("the function's response object: %w", err)
	}
	var status int
	if err := json.Unmarshal(lr.StatusCode, &status); err != nil || status < 100 || status > 599 {
		return httpResponse{}, fmt.Errorf("the function's statusCode %s: want an integer from 100 to 599", lr.StatusCode)
	}
	out := httpResponse{status: status, header: http.Header{}}
	for k, vs := range lr.MultiValueHeaders {
		for _, v := range vs {
			out.header.Add(k, v)
		}
	}
	for k, v := range lr.Headers {
		out.header.Set(k, v)
	}
	for _, c := range lr.Cookies {
		out.header.Add("Set-Cookie", c)
	}
	if lr.Body != nil {
		if lr.IsBase64Encoded {
			body, err := base64.StdEncoding.DecodeString(*lr.Body)
			if err != nil {
				return httpResponse{}, fmt.Errorf("the function's body is marked base64 but is not: %w", err)
			}
			out.body = body
		} else {
			out.body = []byte(*lr.Body)
		}
	}
	if out.header.Get("Content-Type") == "" && len(out.body) > 0 {
		out.header.Set("Content-Type", "application/json")
	}
	return out, nil
}

// write sends resp.
func (resp httpResponse) write(w http.ResponseWriter) {
	h := w.Header()
	for k, vs := range resp.header {
		if strings.EqualFold(k, "Content-Length") {
			continue // net/http sets it
		}
		if strings.HasPrefix(strings.ToLower(k), "access-control-") && h.Get(k) != "" {
			continue // the route's CORS policy answers for it
		}
		h[http.CanonicalHeaderKey(k)] = append(h[http.CanonicalHeaderKey(k)], vs...)
	}
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}

// message answers with API Gateway's error document.
func message(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"message": msg})
	_, _ = w.Write(b)
}
