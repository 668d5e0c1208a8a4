package initd

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// The AWS Lambda Runtime API, version 2018-06-01, as served to one process.
// Each process has its own listener, so a request's connection identifies
// the process; a stale connection of a dead process can never pick up an
// invocation meant for its successor.
const (
	apiPrefix        = "/2018-06-01/runtime/"
	headerRequestID  = "Lambda-Runtime-Aws-Request-Id"
	headerDeadline   = "Lambda-Runtime-Deadline-Ms"
	headerARN        = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID    = "Lambda-Runtime-Trace-Id"
	headerErrorType  = "Lambda-Runtime-Function-Error-Type"
	trailerErrorType = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody = "Lambda-Runtime-Function-Error-Body"
	maxInitErrorBody = 1 << 20
)

var (
	acceptedBody    = []byte(`{"status":"OK"}` + "\n")
	badRequestID    = []byte(`{"errorMessage":"Invalid request ID","errorType":"InvalidRequestID"}` + "\n")
	notFoundBody    = []byte(`{"errorMessage":"Not found","errorType":"NotFound"}` + "\n")
	badMethodBody   = []byte(`{"errorMessage":"Method not allowed","errorType":"MethodNotAllowed"}` + "\n")
	badBodyBody     = []byte(`{"errorMessage":"could not read body","errorType":"InvalidRequest"}` + "\n")
	headersTooLarge = []byte(`{"errorMessage":"Request headers too large","errorType":"RequestHeaderFieldsTooLarge"}` + "\n")
	tooLargeErrType = "Function.ResponseSizeTooLarge"
)

// maxHeaderBytes bounds a request's header and trailer sections, as
// net/http's DefaultMaxHeaderBytes with its slack.
const maxHeaderBytes = 1<<20 + 4<<10

// newAPIServer is the Runtime API's HTTP server for p. It is fasthttp's:
// net/http's server spent a third of ember-init's CPU per warm invocation
// (a goroutine reading ahead for every request, header maps, deadlines).
// Bodies up to the response limit are read before the handler runs; a
// longer or chunked one is streamed to it (readBody).
func newAPIServer(p *process) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:           p.serve,
		ErrorHandler:      serveError,
		StreamRequestBody: true,
		// Headers (and trailers) up to net/http's limit, 1 MiB: aws-lambda-go
		// sends an error's X-Ray cause, up to 1 MiB, as a header of /error.
		// fasthttp keeps a buffer that size per connection (with streamed
		// bodies, for the connection's life): about 1 MiB of ember-init's
		// memory per runtime connection, one or two per function process.
		ReadBufferSize:               maxHeaderBytes,
		Name:                         "ember-init",
		MaxRequestBodySize:           int(p.c.s.cfg.MaxResponseBytes),
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultDate:                true,
		NoDefaultContentType:         true,
		Logger:                       &p.c.log, // at debug (zerolog's Printf)
	}
}

// route says which endpoint a request is for.
type route int

const (
	routeNone route = iota
	routeNext
	routeInitError
	routeResponse
	routeError
	routeCall
)

// routeOf parses path; id is the invocation's (response, error) or the
// called function's name (call).
func routeOf(path string) (r route, id string) {
	if rest, ok := strings.CutPrefix(path, invokePrefix); ok {
		name, ok := strings.CutSuffix(rest, "/invocations")
		if !ok || name == "" || strings.Contains(name, "/") {
			return routeNone, ""
		}
		return routeCall, name
	}
	rest, ok := strings.CutPrefix(path, apiPrefix)
	if !ok {
		return routeNone, ""
	}
	switch {
	case rest == "invocation/next":
		return routeNext, ""
	case rest == "init/error":
		return routeInitError, ""
	case strings.HasPrefix(rest, "invocation/"):
		rest = rest[len("invocation/"):]
		i := strings.IndexByte(rest, '/')
		if i <= 0 {
			return routeNone, ""
		}
		switch rest[i+1:] {
		case "response":
			return routeResponse, rest[:i]
		case "error":
			return routeError, rest[:i]
		}
	}
	return routeNone, ""
}

func (p *process) serve(ctx *fasthttp.RequestCtx) {
	r, id := routeOf(string(ctx.Path()))
	want := ctx.IsPost()
	switch r {
	case routeNone:
		reply(ctx, fasthttp.StatusNotFound, notFoundBody)
		return
	case routeNext:
		want = ctx.IsGet()
	}
	if !want {
		reply(ctx, fasthttp.StatusMethodNotAllowed, badMethodBody)
		return
	}
	switch r {
	case routeNext:
		p.serveNext(ctx)
	case routeInitError:
		p.serveInitError(ctx)
	case routeResponse, routeError:
		p.serveCompletion(ctx, id, r == routeError)
	case routeCall:
		p.serveCall(ctx, id)
	}
}

// serveError answers a request the server could not read: headers over
// maxHeaderBytes, or malformed.
func serveError(ctx *fasthttp.RequestCtx, err error) {
	if _, ok := errors.AsType[*fasthttp.ErrSmallBuffer](err); ok {
		reply(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, headersTooLarge)
		return
	}
	reply(ctx, fasthttp.StatusBadRequest, badBodyBody)
}

// serveNext blocks until an invocation is handed to this process or the
// process ends.
func (p *process) serveNext(ctx *fasthttp.RequestCtx) {
	if p.firstNext.CompareAndSwap(0, time.Now().UnixNano()) {
		close(p.ready)
		if p.c.spec.ReportReady {
			p.c.s.event(initproto.TypeReady, initproto.Ready{ContainerID: p.c.id})
		}
	}
	var inv *invocation
	select {
	case inv = <-p.next:
	case <-p.exited:
		return
	}
	if !connOpen(ctx) {
		// The runtime hung up while it waited (a client timeout): the
		// invocation goes to its next GET /next, as it never saw it.
		select {
		case p.next <- inv:
		case <-p.exited:
		}
		return
	}
	inv.start.Store(time.Now().UnixNano())
	p.cur.Store(inv)
	h := &ctx.Response.Header
	h.Set(headerRequestID, inv.id)
	h.Set(headerDeadline, strconv.FormatInt(inv.deadlineMs, 10))
	h.Set(headerARN, inv.arn)
	if inv.traceID != "" {
		h.Set(headerTraceID, inv.traceID)
	}
	h.SetContentTypeBytes(jsonCT)
	ctx.Response.SetBodyRaw(inv.payload)
}

// connOpen reports whether the request's connection is still open: a
// non-blocking peek sees the peer's close as an empty read and a reset as
// an error; only data or "would block" is open. The request's handler
// must be running (fasthttp does not read the connection meanwhile).
func connOpen(ctx *fasthttp.RequestCtx) bool {
	sc, ok := ctx.Conn().(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	open := true
	var b [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		for {
			n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			if err == unix.EINTR {
				continue
			}
			open = n > 0 || err == unix.EAGAIN
			return true // never wait for the fd
		}
	})
	return open
}

// serveCompletion handles POST .../{id}/response and .../{id}/error.
func (p *process) serveCompletion(ctx *fasthttp.RequestCtx, id string, isError bool) {
	inv := p.cur.Load()
	if inv == nil || inv.id != id {
		reply(ctx, fasthttp.StatusBadRequest, badRequestID)
		return
	}
	limit := p.c.s.cfg.MaxResponseBytes
	req := &ctx.Request.Header
	// A chunked body's trailers join the header once it is read: what is
	// there before is the header section's.
	inHeader := len(req.Peek(trailerErrorType)) != 0
	body, tooLarge, err := readBody(ctx, limit)
	if err != nil && !tooLarge {
		// The runtime hung up mid-body: nothing to complete yet.
		reply(ctx, fasthttp.StatusBadRequest, badBodyBody)
		return
	}
	o := outcome{status: initproto.StatusOK, body: body}
	switch {
	case tooLarge:
		o.status, o.errType = initproto.StatusFunctionError, tooLargeErrType
		o.body = []byte(`{"errorMessage":"Response payload size exceeded maximum allowed payload size (` +
			strconv.FormatInt(limit, 10) + ` bytes).","errorType":"` + tooLargeErrType + `"}`)
	case isError:
		o.status = initproto.StatusFunctionError
		o.errType = string(req.Peek(headerErrorType))
		if o.errType == "" {
			o.errType = errorTypeOf(body)
		}
	case !inHeader && len(req.Peek(trailerErrorType)) != 0:
		// A streamed response that failed part way (aws-lambda-go sets these
		// trailers when reading the response fails).
		o.status, o.errType = initproto.StatusFunctionError, string(req.Peek(trailerErrorType))
		if b, err := base64.StdEncoding.DecodeString(string(req.Peek(trailerErrorBody))); err == nil {
			o.body = b
		}
	}
	o.at = time.Now().UnixNano()
	if !p.cur.CompareAndSwap(inv, nil) {
		reply(ctx, fasthttp.StatusBadRequest, badRequestID) // already completed or timed out
		return
	}
	inv.done <- o
	if tooLarge {
		reply(ctx, fasthttp.StatusRequestEntityTooLarge, o.body)
		return
	}
	reply(ctx, fasthttp.StatusAccepted, acceptedBody)
}

// serveInitError records that the function failed to initialise; the pending
// (or next) invocation of this process fails with this document.
func (p *process) serveInitError(ctx *fasthttp.RequestCtx) {
	body, _, _ := readBody(ctx, maxInitErrorBody)
	errType := string(ctx.Request.Header.Peek(headerErrorType))
	if errType == "" {
		errType = errorTypeOf(body)
	}
	p.setInitErr(errType, body)
	reply(ctx, fasthttp.StatusAccepted, acceptedBody)
}

// readBody reads the request's body, at most limit bytes (its own copy:
// fasthttp reuses its buffers); tooLarge reports a longer body, not read.
// A chunked body's trailers are in the request's header once it is read.
func readBody(ctx *fasthttp.RequestCtx, limit int64) (body []byte, tooLarge bool, err error) {
	req := &ctx.Request
	n := req.Header.ContentLength()
	if int64(n) > limit {
		return nil, true, nil
	}
	stream := req.BodyStream()
	switch {
	case stream == nil:
		return append([]byte{}, req.Body()...), false, nil
	case n >= 0:
		body = make([]byte, n)
		_, err = io.ReadFull(stream, body)
		return body, false, err
	}
	body, err = io.ReadAll(io.LimitReader(stream, limit+1))
	if int64(len(body)) > limit {
		return nil, true, nil
	}
	return body, false, err
}

// errorTypeOf returns the errorType of a Lambda error document, or
// "Unhandled" as Lambda reports for an error without one.
func errorTypeOf(body []byte) string {
	var doc struct {
		ErrorType string `json:"errorType"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.ErrorType == "" {
		return "Unhandled"
	}
	return doc.ErrorType
}

var jsonCT = []byte("application/json")

// reply answers with a JSON document; body must not change afterwards.
func reply(ctx *fasthttp.RequestCtx, code int, body []byte) {
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetContentTypeBytes(jsonCT)
	ctx.Response.SetBodyRaw(body)
}

// errors classes used in Result.Error and Started.Error texts.
var (
	errInvalid  = errors.New("invalid request")
	errNotFound = errors.New("not found")
)
