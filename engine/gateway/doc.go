// Package gateway serves tenants' HTTP routes (registry.Route): emberd's
// gateway listener takes /{tenant}/{path...}, matches the path against the
// tenant's route table with net/http's ServeMux patterns (GET
// /orders/{id}, a greedy {rest+}), and runs the route's function on the
// warm path, like a synchronous invoke.
//
// By default the function receives API Gateway's HTTP API payload format
// 2.0 (what aws-lambda-go's events.APIGatewayV2HTTPRequest parses) and its
// result is mapped back as API Gateway does: an object with statusCode is
// a response (headers, multiValueHeaders, cookies, body, isBase64Encoded);
// any other JSON is a 200 application/json body. A route's Mapping replaces
// both with templates (mapping.go). Errors follow API Gateway: no route
// 404, body over the route's limit 413, a function error or an invalid
// response 502, a timeout 504, no capacity 503, a missing or wrong key on
// a route that is not public 401.
//
// The parts: gateway.go (tables, matching, auth, invoking), event.go (the
// 2.0 payload), response.go (the response mapping), mapping.go (custom
// templates), cors.go (CORS and preflight).
package gateway
