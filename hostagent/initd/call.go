package initd

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"

	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/valyala/fasthttp"
)

// invokePrefix is Lambda's Invoke API (2015-03-31), served beside the
// Runtime API so that a function calls another with the AWS SDK pointed at
// AWS_LAMBDA_RUNTIME_API, or with a plain POST: POST
// /2015-03-31/functions/{name}/invocations[?Qualifier=q], body the
// payload, RequestResponse only. The call goes to the agent (TypeCall);
// while it runs, the agent may freeze the caller's container and give the
// instance to other work (see hostagent's park.go).
const invokePrefix = "/2015-03-31/functions/"

// pendingCall is a call of an invocation waiting for its result.
type pendingCall struct {
	id   uint64 // the Call's CallID
	done chan callAnswer
	// caller is the waiting request; gone is closed when a new call
	// replaced this one because its caller hung up.
	caller *fasthttp.RequestCtx
	gone   chan struct{}
	// mu holds the handler in place while another call looks at caller's
	// connection; left: the handler is done with caller (it may be
	// another request's by now).
	mu   sync.Mutex
	left bool
}

// leave ends the call: it gives up the invocation's slot, unless another
// call took it.
func (pc *pendingCall) leave(inv *invocation) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.left = true
	inv.call.CompareAndSwap(pc, nil)
}

type callAnswer struct {
	res  initproto.CallResult
	body []byte
}

// serveCall runs POST .../functions/{name}/invocations for the invocation
// the process is running: one call at a time.
func (p *process) serveCall(ctx *fasthttp.RequestCtx, name string) {
	if t := ctx.Request.Header.Peek("X-Amz-Invocation-Type"); len(t) != 0 && string(t) != "RequestResponse" {
		callError(ctx, fasthttp.StatusBadRequest, "InvalidParameterValueException", "only RequestResponse invocations can be made from a function")
		return
	}
	fn, qualifier := splitFunctionName(name)
	if q := ctx.QueryArgs().Peek("Qualifier"); len(q) != 0 {
		qualifier = string(q)
	}
	if fn == "" {
		callError(ctx, fasthttp.StatusBadRequest, "InvalidParameterValueException", "no function name")
		return
	}
	inv := p.cur.Load()
	if inv == nil {
		callError(ctx, fasthttp.StatusBadRequest, "InvalidRequestContentException", "a function calls another only while it runs an invocation")
		return
	}
	body, tooLarge, err := readBody(ctx, p.c.s.cfg.MaxResponseBytes)
	if tooLarge {
		callError(ctx, fasthttp.StatusRequestEntityTooLarge, "RequestTooLargeException", "request payload too large")
		return
	}
	if err != nil {
		callError(ctx, fasthttp.StatusBadRequest, "InvalidRequestContentException", "could not read the payload")
		return
	}
	pc := &pendingCall{id: p.c.s.calls.Add(1), done: make(chan callAnswer, 1), caller: ctx, gone: make(chan struct{})}
	if !p.takeCallSlot(inv, pc) {
		callError(ctx, fasthttp.StatusConflict, "ResourceConflictException", "the invocation already waits for a call")
		return
	}
	defer pc.leave(inv)
	if !p.c.s.eventBody(initproto.TypeCall, initproto.Call{
		InvocationID: inv.id, ContainerID: p.c.id, Function: fn, Qualifier: qualifier, CallID: pc.id,
	}, body) {
		callError(ctx, fasthttp.StatusBadGateway, "ServiceException", "no host agent connected")
		return
	}
	var a callAnswer
	select {
	case a = <-pc.done:
	case <-pc.gone:
		return // its caller hung up and called again
	case <-p.exited:
		return // the invocation ended (a timeout kills the process)
	}
	switch {
	case a.res.Error != "":
		callError(ctx, fasthttp.StatusBadGateway, "ServiceException", a.res.Error)
		return
	case a.res.Status != initproto.StatusOK:
		// Lambda answers 200 with the function's error document and this
		// header for every kind of function failure.
		ctx.Response.Header.Set("X-Amz-Function-Error", "Unhandled")
	}
	reply(ctx, fasthttp.StatusOK, a.body)
}

// takeCallSlot makes pc the invocation's call: one at a time, but a call
// whose caller hung up (an SDK's timeout before its retry) gives way.
func (p *process) takeCallSlot(inv *invocation, pc *pendingCall) bool {
	for !inv.call.CompareAndSwap(nil, pc) {
		old := inv.call.Load()
		if old == nil {
			continue
		}
		// Under old.mu its handler stays in place, so nothing else reads
		// its connection (a peek cannot block) and caller is still its.
		old.mu.Lock()
		if old.left { // the slot is free, or another call's
			old.mu.Unlock()
			continue
		}
		if connOpen(old.caller) {
			old.mu.Unlock()
			return false
		}
		replaced := inv.call.CompareAndSwap(old, pc)
		if replaced {
			close(old.gone)
		}
		old.mu.Unlock()
		if replaced {
			return true
		}
	}
	return true
}

// splitFunctionName takes "name", "name:qualifier" or an ARN
// "arn:...:function:name[:qualifier]".
func splitFunctionName(s string) (fn, qualifier string) {
	if u, err := url.PathUnescape(s); err == nil {
		s = u
	}
	if _, after, ok := strings.Cut(s, ":function:"); ok && strings.HasPrefix(s, "arn:") {
		s = after
	}
	fn, qualifier, _ = strings.Cut(s, ":")
	return fn, qualifier
}

// callError answers a call the way Lambda's Invoke API reports errors.
func callError(ctx *fasthttp.RequestCtx, code int, typ, msg string) {
	b, _ := json.Marshal(struct {
		Type    string `json:"Type"`
		Message string `json:"message"`
	}{"User", msg})
	ctx.Response.Header.Set("X-Amzn-ErrorType", typ)
	reply(ctx, code, b)
}

// handleCallResult gives a call's result to the call waiting for it; a
// result nobody waits for any more (the invocation ended, or its caller
// hung up and called again) is dropped.
func (s *Server) handleCallResult(f *initproto.Frame) {
	closeAll(f.FDs)
	var res initproto.CallResult
	if err := f.Decode(&res); err != nil {
		s.log.Warn().Err(err).Msg("malformed call result")
		return
	}
	s.mu.Lock()
	c := s.containers[res.ContainerID]
	s.mu.Unlock()
	if c == nil {
		return
	}
	c.mu.Lock()
	p := c.proc
	c.mu.Unlock()
	if p == nil {
		return
	}
	inv := p.cur.Load()
	if inv == nil || inv.id != res.InvocationID {
		return
	}
	if pc := inv.call.Load(); pc != nil && (res.CallID == pc.id || res.CallID == 0) {
		select {
		case pc.done <- callAnswer{res, f.Body}:
		default: // answered already
		}
	}
}
