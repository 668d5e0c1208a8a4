// Package client is the Go client of Ember's HTTP API, used by the ember
// CLI and tests. The API key given with WithAPIKey says who the client acts
// as: a tenant, or the administrator. Error responses
// come back as *APIError, which errors.Is-matches the engine's error classes
// (registry.ErrNotFound, ErrInvalid, ErrConflict, ErrUnavailable) and this
// package's ErrTooLarge, ErrUnauthorized and ErrForbidden.
package client

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/registry"
)

var (
	// ErrTooLarge matches 413 answers.
	ErrTooLarge = errors.New("request too large")
	// ErrUnauthorized matches 401 answers.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden matches 403 answers.
	ErrForbidden = errors.New("forbidden")
)

// APIError is an error answer of the API.
type APIError struct {
	StatusCode int
	Type       string
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("ember api: %d %s: %s", e.StatusCode, e.Type, e.Message)
}

// Is maps the error's type to the engine's error classes.
func (e *APIError) Is(target error) bool {
	switch e.Type {
	case wire.ErrNotFound:
		return target == registry.ErrNotFound
	case wire.ErrInvalid:
		return target == registry.ErrInvalid
	case wire.ErrConflict:
		return target == registry.ErrConflict
	case wire.ErrUnavailable:
		return target == registry.ErrUnavailable
	case wire.ErrTooLarge:
		return target == ErrTooLarge
	case wire.ErrUnauthorized:
		return target == ErrUnauthorized
	case wire.ErrForbidden:
		return target == ErrForbidden
	}
	return false
}

// Client talks to one Ember API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	key  string
	hc   *http.Client
}

// Option configures a Client.
type Option func(*Client) error

// WithAPIKey sets the API key sent as a bearer token: a tenant's key, or
// the administrator's. It says who the client acts as. Default: none.
func WithAPIKey(key string) Option {
	return func(c *Client) error {
		if strings.ContainsAny(key, " \t\r\n") {
			return errors.New("client: API key must not contain whitespace")
		}
		c.key = key
		return nil
	}
}

// WithHTTPClient sets the HTTP client. Default: a client with no overall
// timeout (invocations can run 15 minutes; use contexts).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("client: nil http client")
		}
		c.hc = hc
		return nil
	}
}

// New returns a client of the API at baseURL (e.g. "http://127.0.0.1:8080").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	c := &Client{base: u, hc: &http.Client{}}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = q.Encode()
	return u.String()
}

// do sends a request and, for 2xx, decodes JSON into out (if non-nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string, out any) error {
	resp, err := c.send(ctx, method, path, q, body, contentType)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("client: %s %s: decoding response: %w", method, path, err)
	}
	return nil
}

// send returns a 2xx response (the caller closes its body) or an error.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string) (*http.Response, error) {
	return c.sendWith(ctx, method, path, q, body, contentType, nil)
}

// sendWith is send with extra request headers.
func (c *Client) sendWith(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: %s %s: %w: %w", method, path, registry.ErrUnavailable, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb wire.ErrorBody
	if json.Unmarshal(b, &eb) != nil || eb.Error.Type == "" {
		eb.Error = wire.ErrorDetail{Type: typeForStatus(resp.StatusCode), Message: strings.TrimSpace(string(b))}
	}
	return nil, &APIError{StatusCode: resp.StatusCode, Type: eb.Error.Type, Message: eb.Error.Message}
}

func typeForStatus(code int) string {
	switch code {
	case http.StatusNotFound:
		return wire.ErrNotFound
	case http.StatusBadRequest:
		return wire.ErrInvalid
	case http.StatusConflict:
		return wire.ErrConflict
	case http.StatusRequestEntityTooLarge:
		return wire.ErrTooLarge
	case http.StatusUnauthorized:
		return wire.ErrUnauthorized
	case http.StatusForbidden:
		return wire.ErrForbidden
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return wire.ErrUnavailable
	}
	return wire.ErrInternal
}

func fnPath(name string) string { return "/v1/functions/" + url.PathEscape(name) }

// DeployFunction creates or updates a function. code (a zip) may be nil on
// update to keep the current package. The zip is streamed, not buffered.
func (c *Client) DeployFunction(ctx context.Context, name string, cfg wire.FunctionConfig, code io.Reader) (wire.Function, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan struct{})
	go func() { // ends when the body is written or the request stops reading it
		defer close(done)
		err := func() error {
			cw, err := mw.CreateFormField("config")
			if err != nil {
				return err
			}
			if err := json.NewEncoder(cw).Encode(cfg); err != nil {
				return err
			}
			if code != nil {
				fw, err := mw.CreateFormFile("code", name+".zip")
				if err != nil {
					return err
				}
				if _, err := io.Copy(fw, code); err != nil {
					return err
				}
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	var out wire.Function
	err := c.do(ctx, http.MethodPut, fnPath(name), nil, pr, mw.FormDataContentType(), &out)
	pr.Close() // unblocks the writer if the request ended early
	<-done
	return out, err
}

// GetFunction returns a function.
func (c *Client) GetFunction(ctx context.Context, name string) (wire.Function, error) {
	var out wire.Function
	return out, c.do(ctx, http.MethodGet, fnPath(name), nil, nil, "", &out)
}

// ListFunctions returns the tenant's functions.
func (c *Client) ListFunctions(ctx context.Context) ([]wire.Function, error) {
	var out wire.Functions
	return out.Functions, c.do(ctx, http.MethodGet, "/v1/functions", nil, nil, "", &out)
}

// DeleteFunction deletes a function (missing is success).
func (c *Client) DeleteFunction(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, fnPath(name), nil, nil, "", nil)
}

// PublishVersion publishes $LATEST as an immutable version.
func (c *Client) PublishVersion(ctx context.Context, name string) (wire.Version, error) {
	var out wire.Version
	return out, c.do(ctx, http.MethodPost, fnPath(name)+"/versions", nil, nil, "", &out)
}

// CreateAlias creates alias a.Name of function a.Function; an existing
// alias is a conflict (409).
func (c *Client) CreateAlias(ctx context.Context, a wire.Alias) (wire.Alias, error) {
	return c.putAlias(ctx, http.MethodPost, fnPath(a.Function)+"/aliases", a)
}

// UpdateAlias replaces alias a.Name of function a.Function (version,
// extra versions and description); a missing alias is 404.
func (c *Client) UpdateAlias(ctx context.Context, a wire.Alias) (wire.Alias, error) {
	return c.putAlias(ctx, http.MethodPut, fnPath(a.Function)+"/aliases/"+url.PathEscape(a.Name), a)
}

func (c *Client) putAlias(ctx context.Context, method, path string, a wire.Alias) (wire.Alias, error) {
	body, err := json.Marshal(a)
	if err != nil {
		return wire.Alias{}, fmt.Errorf("client: %w", err)
	}
	var out wire.Alias
	return out, c.do(ctx, method, path, nil, bytes.NewReader(body), "application/json", &out)
}

// Alias returns alias name of function.
func (c *Client) Alias(ctx context.Context, function, name string) (wire.Alias, error) {
	var out wire.Alias
	return out, c.do(ctx, http.MethodGet, fnPath(function)+"/aliases/"+url.PathEscape(name), nil, nil, "", &out)
}

// Aliases lists function's aliases.
func (c *Client) Aliases(ctx context.Context, function string) ([]wire.Alias, error) {
	var out wire.Aliases
	return out.Aliases, c.do(ctx, http.MethodGet, fnPath(function)+"/aliases", nil, nil, "", &out)
}

// DeleteAlias removes alias name of function.
func (c *Client) DeleteAlias(ctx context.Context, function, name string) error {
	return c.do(ctx, http.MethodDelete, fnPath(function)+"/aliases/"+url.PathEscape(name), nil, nil, "", nil)
}

// InvokeResult is a synchronous invocation's outcome. A function error is a
// Status other than "ok", not an error.
type InvokeResult struct {
	InvocationID string
	// Status is ok, function_error, timeout or crashed.
	Status    string
	ErrorType string
	Version   string
	// Start is hot, pool_hit or cold.
	Start    string
	Duration time.Duration
	LogTail  []byte
	// LogTruncatedBytes is how much of the output was dropped for being
	// over the per-invocation limit.
	LogTruncatedBytes int64
	Payload           []byte
}

// OK reports whether the function succeeded.
func (r InvokeResult) OK() bool { return r.Status == "ok" }

// Invoke runs a function synchronously with payload.
func (c *Client) Invoke(ctx context.Context, name, qualifier string, payload []byte) (InvokeResult, error) {
	return c.InvokeLogged(ctx, name, qualifier, "", payload)
}

// InvokeLogged is Invoke with the invocation's output sent to the tenant's
// logging service logService ("" for the function's, "none" for none).
func (c *Client) InvokeLogged(ctx context.Context, name, qualifier, logService string, payload []byte) (InvokeResult, error) {
	q := url.Values{}
	if qualifier != "" {
		q.Set("qualifier", qualifier)
	}
	var hdr http.Header
	if logService != "" {
		hdr = http.Header{wire.HeaderLogService: {logService}}
	}
	resp, err := c.sendWith(ctx, http.MethodPost, fnPath(name)+"/invoke", q, bytes.NewReader(payload), "application/json", hdr)
	if err != nil {
		return InvokeResult{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return InvokeResult{}, fmt.Errorf("client: reading invoke response: %w", err)
	}
	h := resp.Header
	res := InvokeResult{InvocationID: h.Get(wire.HeaderInvocationID), Status: h.Get(wire.HeaderStatus),
		ErrorType: h.Get(wire.HeaderErrorType), Version: h.Get(wire.HeaderVersion), Start: h.Get(wire.HeaderStart), Payload: body}
	if ms, err := strconv.ParseFloat(h.Get(wire.HeaderDurationMs), 64); err == nil {
		res.Duration = time.Duration(ms * float64(time.Millisecond))
	}
	res.LogTruncatedBytes, _ = strconv.ParseInt(h.Get(wire.HeaderLogTruncated), 10, 64)
	if t := h.Get(wire.HeaderLogTail); t != "" {
		res.LogTail, _ = base64.StdEncoding.DecodeString(t)
	}
	return res, nil
}

// PutBinding creates or replaces binding b.ID.
func (c *Client) PutBinding(ctx context.Context, b wire.Binding) (wire.Binding, error) {
	body, err := json.Marshal(b)
	if err != nil {
		return wire.Binding{}, fmt.Errorf("client: %w", err)
	}
	var out wire.Binding
	return out, c.do(ctx, http.MethodPut, "/v1/bindings/"+url.PathEscape(b.ID), nil, bytes.NewReader(body), "application/json", &out)
}

// ListBindings returns the tenant's bindings.
func (c *Client) ListBindings(ctx context.Context) ([]wire.Binding, error) {
	var out wire.Bindings
	return out.Bindings, c.do(ctx, http.MethodGet, "/v1/bindings", nil, nil, "", &out)
}

// GetBinding returns one of the tenant's bindings.
func (c *Client) GetBinding(ctx context.Context, id string) (wire.Binding, error) {
	var out wire.Binding
	return out, c.do(ctx, http.MethodGet, "/v1/bindings/"+url.PathEscape(id), nil, nil, "", &out)
}

// RewindBinding moves the binding's consumer group to rw.To or rw.Offsets
// (applied by its consumers, once per partition) and returns the binding.
func (c *Client) RewindBinding(ctx context.Context, id string, rw wire.Rewind) (wire.Binding, error) {
	body, err := json.Marshal(rw)
	if err != nil {
		return wire.Binding{}, fmt.Errorf("client: %w", err)
	}
	var out wire.Binding
	return out, c.do(ctx, http.MethodPost, "/v1/bindings/"+url.PathEscape(id)+"/rewind", nil, bytes.NewReader(body), "application/json", &out)
}

// RedriveBinding invokes the binding's function again with its
// dead-lettered records in the range, returning when they are handled.
func (c *Client) RedriveBinding(ctx context.Context, id string, rd wire.Redrive) (wire.RedriveResult, error) {
	body, err := json.Marshal(rd)
	if err != nil {
		return wire.RedriveResult{}, fmt.Errorf("client: %w", err)
	}
	var out wire.RedriveResult
	return out, c.do(ctx, http.MethodPost, "/v1/bindings/"+url.PathEscape(id)+"/redrive", nil, bytes.NewReader(body), "application/json", &out)
}

// DeleteBinding deletes a binding (missing is success).
func (c *Client) DeleteBinding(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/bindings/"+url.PathEscape(id), nil, nil, "", nil)
}

// Produce writes records to topic and returns how many were acknowledged.
func (c *Client) Produce(ctx context.Context, topic string, recs []wire.Record) (int, error) {
	body, err := json.Marshal(wire.ProduceRequest{Records: recs})
	if err != nil {
		return 0, fmt.Errorf("client: %w", err)
	}
	var out wire.ProduceResponse
	err = c.do(ctx, http.MethodPost, "/v1/topics/"+url.PathEscape(topic)+"/records", nil, bytes.NewReader(body), "application/json", &out)
	return out.Produced, err
}

// BindingLag returns the binding's lag now and the lag monitor's samples
// over the last since (at most an hour; 0: the server's default, 15m).
func (c *Client) BindingLag(ctx context.Context, id string, since time.Duration) (wire.LagHistory, error) {
	q := url.Values{}
	if since > 0 {
		q.Set("since", since.String())
	}
	var out wire.LagHistory
	return out, c.do(ctx, http.MethodGet, "/v1/bindings/"+url.PathEscape(id)+"/lag", q, nil, "", &out)
}

// InvokeAsync queues an asynchronous (Event) invocation and returns its id.
func (c *Client) InvokeAsync(ctx context.Context, name, qualifier string, payload []byte) (string, error) {
	return c.InvokeDeferred(ctx, name, qualifier, time.Time{}, payload)
}

// InvokeDeferred queues an asynchronous invocation that must end by
// neededBy (zero: an ordinary asynchronous one); it starts when the pool
// has idle capacity, and at the latest so that it ends in time.
func (c *Client) InvokeDeferred(ctx context.Context, name, qualifier string, neededBy time.Time, payload []byte) (string, error) {
	q := url.Values{}
	if qualifier != "" {
		q.Set("qualifier", qualifier)
	}
	h := http.Header{wire.HeaderInvocationType: {"Event"}}
	if !neededBy.IsZero() {
		h.Set(wire.HeaderNeededBy, neededBy.UTC().Format(time.RFC3339Nano))
	}
	resp, err := c.sendWith(ctx, http.MethodPost, fnPath(name)+"/invoke", q, bytes.NewReader(payload), "application/json", h)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out wire.Accepted
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("client: async invoke %s: decoding response: %w", name, err)
	}
	return out.InvocationID, nil
}

// Invocation returns an asynchronous invocation's record.
func (c *Client) Invocation(ctx context.Context, id string) (wire.Invocation, error) {
	var out wire.Invocation
	return out, c.do(ctx, http.MethodGet, "/v1/invocations/"+url.PathEscape(id), nil, nil, "", &out)
}

// PutAsyncConfig sets how the function's asynchronous invocations are
// retried and where their outcomes go.
func (c *Client) PutAsyncConfig(ctx context.Context, name string, ac wire.AsyncConfig) (wire.AsyncConfig, error) {
	body, err := json.Marshal(ac)
	if err != nil {
		return wire.AsyncConfig{}, fmt.Errorf("client: %w", err)
	}
	var out wire.AsyncConfig
	return out, c.do(ctx, http.MethodPut, fnPath(name)+"/async", nil, bytes.NewReader(body), "application/json", &out)
}

// PutRoute creates or replaces the route of rt.Method and rt.Path.
func (c *Client) PutRoute(ctx context.Context, rt wire.Route) (wire.Route, error) {
	body, err := json.Marshal(rt)
	if err != nil {
		return wire.Route{}, fmt.Errorf("client: %w", err)
	}
	var out wire.Route
	return out, c.do(ctx, http.MethodPut, "/v1/routes", nil, bytes.NewReader(body), "application/json", &out)
}

// Routes lists the tenant's routes.
func (c *Client) Routes(ctx context.Context) ([]wire.Route, error) {
	var out wire.Routes
	return out.Routes, c.do(ctx, http.MethodGet, "/v1/routes", nil, nil, "", &out)
}

// DeleteRoute removes the route of method and path.
func (c *Client) DeleteRoute(ctx context.Context, method, path string) error {
	return c.do(ctx, http.MethodDelete, "/v1/routes", url.Values{"method": {method}, "path": {path}}, nil, "", nil)
}

// DeadLetters returns up to limit (1 to 1000; 0: 20) of the binding's
// latest dead-lettered records, newest first.
func (c *Client) DeadLetters(ctx context.Context, id string, limit int) ([]wire.DeadLetter, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out wire.DeadLetters
	return out.DeadLetters, c.do(ctx, http.MethodGet, "/v1/bindings/"+url.PathEscape(id)+"/dlq", q, nil, "", &out)
}

// Status returns agents, pool occupancy and the tenant's bindings with lag.
func (c *Client) Status(ctx context.Context) (wire.Status, error) {
	var out wire.Status
	return out, c.do(ctx, http.MethodGet, "/v1/status", nil, nil, "", &out)
}

// FetchCode downloads a package by digest. The caller closes the reader;
// the int64 is the size the server announced (-1 if unknown).
func (c *Client) FetchCode(ctx context.Context, digest string) (io.ReadCloser, int64, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/code/"+url.PathEscape(digest), nil, nil, "")
	if err != nil {
		return nil, 0, err
	}
	return resp.Body, resp.ContentLength, nil
}

// Health checks /healthz.
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil, "", nil)
}
