package gateway

import (
	"encoding/base64"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ember-run/ember/engine/registry"
)

// request is what the gateway knows of one HTTP request to a route.
type request struct {
	r       *http.Request
	route   registry.Route
	rawPath string // the path after /{tenant}
	params  map[string]string
	body    []byte
	id      string
	at      time.Time
}

// event builds the payload format 2.0 event.
func (q *request) event() events.APIGatewayV2HTTPRequest {
	r := q.r
	ev := events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       q.route.Key(),
		RawPath:        q.rawPath,
		RawQueryString: r.URL.RawQuery,
		Headers:        map[string]string{},
		PathParameters: q.params,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:     q.route.Key(),
			AccountID:    q.route.Tenant,
			Stage:        "$default",
			RequestID:    q.id,
			APIID:        "ember",
			DomainName:   hostOnly(r.Host),
			DomainPrefix: strings.Split(hostOnly(r.Host), ".")[0],
			Time:         q.at.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			TimeEpoch:    q.at.UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: r.Method, Path: q.rawPath, Protocol: r.Proto,
				SourceIP: hostOnly(r.RemoteAddr), UserAgent: r.UserAgent(),
			},
		},
	}
	for k, vs := range r.Header {
		k = strings.ToLower(k)
		switch {
		case k == "cookie":
			for _, v := range vs {
				for _, c := range strings.Split(v, ";") {
					if c = strings.TrimSpace(c); c != "" {
						ev.Cookies = append(ev.Cookies, c)
					}
				}
			}
			continue
		case k == "authorization" && !q.route.Public:
			continue // the tenant's API key is for Ember, not for the function
		}
		ev.Headers[k] = strings.Join(vs, ",")
	}
	if qs := r.URL.Query(); len(qs) > 0 {
		ev.QueryStringParameters = make(map[string]string, len(qs))
		for k, vs := range qs {
			ev.QueryStringParameters[k] = strings.Join(vs, ",")
		}
	}
	if len(q.body) > 0 {
		if isText(r.Header.Get("Content-Type"), q.body) {
			ev.Body = string(q.body)
		} else {
			ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(q.body), true
		}
	}
	return ev
}

// isText reports whether a body goes to the function as text: a textual
// media type and valid UTF-8. Anything else is base64, as API Gateway
// sends binary media.
func isText(contentType string, body []byte) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if contentType == "" {
		mt, err = "text/plain", nil
	}
	if err != nil || !utf8.Valid(body) {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	}
	switch mt {
	case "application/json", "application/xml", "application/javascript", "application/x-www-form-urlencoded", "application/graphql":
		return true
	}
	return false
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
