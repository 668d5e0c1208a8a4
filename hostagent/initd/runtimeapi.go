package initd

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
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
	tooLargeErrType = "Function.ResponseSizeTooLarge"
	jsonCT          = []string{"application/json"}
)

func (p *process) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, invokePrefix); ok {
		p.serveCall(w, r, rest)
		return
	}
	if !strings.HasPrefix(path, apiPrefix) {
		reply(w, http.StatusNotFound, notFoundBody)
		return
	}
	rest := path[len(apiPrefix):]
	switch {
	case rest == "invocation/next":
		if r.Method != http.MethodGet {
			reply(w, http.StatusMethodNotAllowed, badMethodBody)
			return
		}
		p.serveNext(w, r)
	case rest == "init/error":
		if r.Method != http.MethodPost {
			reply(w, http.StatusMethodNotAllowed, badMethodBody)
			return
		}
		p.serveInitError(w, r)
	case strings.HasPrefix(rest, "invocation/"):
		rest = rest[len("invocation/"):]
		i := strings.IndexByte(rest, '/')
		if i <= 0 {
			reply(w, http.StatusNotFound, notFoundBody)
			return
		}
		id, verb := rest[:i], rest[i+1:]
		if verb != "response" && verb != "error" {
			reply(w, http.StatusNotFound, notFoundBody)
			return
		}
		if r.Method != http.MethodPost {
			reply(w, http.StatusMethodNotAllowed, badMethodBody)
			return
		}
		p.serveCompletion(w, r, id, verb == "error")
	default:
		reply(w, http.StatusNotFound, notFoundBody)
	}
}

// serveNext blocks until an invocation is handed to this process or the
// runtime goes away.
func (p *process) serveNext(w http.ResponseWriter, r *http.Request) {
	if p.firstNext.CompareAndSwap(0, time.Now().UnixNano()) {
		close(p.ready)
	}
	var inv *invocation
	select {
	case inv = <-p.next:
	case <-r.Context().Done():
		return
	}
	inv.start.Store(time.Now().UnixNano())
	p.cur.Store(inv)
	h := w.Header()
	h[headerRequestID] = []string{inv.id}
	h[headerDeadline] = []string{strconv.FormatInt(inv.deadlineMs, 10)}
	h[headerARN] = []string{inv.arn}
	if inv.traceID != "" {
		h[headerTraceID] = []string{inv.traceID}
	}
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(inv.payload))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(inv.payload)
}

// serveCompletion handles POST .../{id}/response and .../{id}/error.
func (p *process) serveCompletion(w http.ResponseWriter, r *http.Request, id string, isError bool) {
	inv := p.cur.Load()
	if inv == nil || inv.id != id {
		reply(w, http.StatusBadRequest, badRequestID)
		return
	}
	limit := p.c.s.cfg.MaxResponseBytes
	body, tooLarge, err := readBody(r, limit)
	if err != nil && !tooLarge {
		// The runtime hung up mid-body: nothing to complete yet.
		reply(w, http.StatusBadRequest, []byte(`{"errorMessage":"could not read body","errorType":"InvalidRequest"}`+"\n"))
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
		o.errType = r.Header.Get(headerErrorType)
		if o.errType == "" {
			o.errType = errorTypeOf(body)
		}
	case r.Trailer.Get(trailerErrorType) != "":
		// A streamed response that failed part way (aws-lambda-go sets these
		// trailers when reading the response fails).
		o.status, o.errType = initproto.StatusFunctionError, r.Trailer.Get(trailerErrorType)
		if b, err := base64.StdEncoding.DecodeString(r.Trailer.Get(trailerErrorBody)); err == nil {
			o.body = b
		}
	}
	o.at = time.Now().UnixNano()
	if !p.cur.CompareAndSwap(inv, nil) {
		reply(w, http.StatusBadRequest, badRequestID) // already completed or timed out
		return
	}
	inv.done <- o
	if tooLarge {
		reply(w, http.StatusRequestEntityTooLarge, o.body)
		return
	}
	reply(w, http.StatusAccepted, acceptedBody)
}

// serveInitError records that the function failed to initialise; the pending
// (or next) invocation of this process fails with this document.
func (p *process) serveInitError(w http.ResponseWriter, r *http.Request) {
	body, _, _ := readBody(r, maxInitErrorBody)
	errType := r.Header.Get(headerErrorType)
	if errType == "" {
		errType = errorTypeOf(body)
	}
	p.setInitErr(errType, body)
	reply(w, http.StatusAccepted, acceptedBody)
}

// readBody reads at most limit bytes; tooLarge reports a longer body.
func readBody(r *http.Request, limit int64) (body []byte, tooLarge bool, err error) {
	if r.ContentLength > limit {
		return nil, true, nil
	}
	if r.ContentLength >= 0 {
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
		return body, false, err
	}
	body, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
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

func reply(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"] = jsonCT
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

var _ http.Handler = (*process)(nil)

// errors classes used in Result.Error and Started.Error texts.
var (
	errInvalid  = errors.New("invalid request")
	errNotFound = errors.New("not found")
)
