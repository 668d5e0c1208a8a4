// Command http-echo is an example function for an HTTP route: it takes API
// Gateway's HTTP API payload format 2.0 (events.APIGatewayV2HTTPRequest)
// and answers with what it received, as JSON: method, raw path and query,
// path and query parameters, headers, cookies, and the body (decoded when
// it came base64). Query parameters steer it: status=N answers with that
// status; cookie=V sets a cookie; binary=N answers N bytes 0..255 as a
// base64 body; sleep=MS waits first; fail=1 returns an error; bad=1
// returns an invalid response.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// Echo is the JSON body http-echo answers with.
type Echo struct {
	Method     string            `json:"method"`
	RouteKey   string            `json:"routeKey"`
	RawPath    string            `json:"rawPath"`
	RawQuery   string            `json:"rawQuery"`
	PathParams map[string]string `json:"pathParameters"`
	Query      map[string]string `json:"query"`
	Headers    map[string]string `json:"headers"`
	Cookies    []string          `json:"cookies"`
	Body       []byte            `json:"body"` // base64 in JSON: the exact bytes received
	WasBase64  bool              `json:"wasBase64"`
	Tenant     string            `json:"tenant"`
	RequestID  string            `json:"requestId"`
}

func handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	q := req.QueryStringParameters
	if ms, err := strconv.Atoi(q["sleep"]); err == nil {
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-ctx.Done():
			return events.APIGatewayV2HTTPResponse{}, ctx.Err()
		}
	}
	if q["fail"] == "1" {
		return events.APIGatewayV2HTTPResponse{}, errors.New("asked to fail")
	}
	if q["bad"] == "1" {
		return events.APIGatewayV2HTTPResponse{StatusCode: 99}, nil
	}
	body := []byte(req.Body)
	if req.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(req.Body); err != nil {
			return events.APIGatewayV2HTTPResponse{}, err
		}
	}
	resp := events.APIGatewayV2HTTPResponse{StatusCode: 200, Headers: map[string]string{"X-Echo": "yes"}}
	if s, err := strconv.Atoi(q["status"]); err == nil {
		resp.StatusCode = s
	}
	if c := q["cookie"]; c != "" {
		resp.Cookies = []string{"echo=" + c + "; Path=/", "second=2"}
	}
	if n, err := strconv.Atoi(q["binary"]); err == nil {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		resp.Headers["Content-Type"] = "application/octet-stream"
		resp.Body, resp.IsBase64Encoded = base64.StdEncoding.EncodeToString(b), true
		return resp, nil
	}
	out, err := json.Marshal(Echo{Method: req.RequestContext.HTTP.Method, RouteKey: req.RouteKey, RawPath: req.RawPath,
		RawQuery: req.RawQueryString, PathParams: req.PathParameters, Query: q, Headers: req.Headers, Cookies: req.Cookies,
		Body: body, WasBase64: req.IsBase64Encoded, Tenant: req.RequestContext.AccountID, RequestID: req.RequestContext.RequestID})
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, err
	}
	resp.Headers["Content-Type"] = "application/json"
	resp.Body = string(out)
	return resp, nil
}

func main() { lambda.Start(handle) }
