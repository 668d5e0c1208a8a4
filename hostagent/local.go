package hostagent

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ember-run/ember/hostagent/dispatchpb"
)

// localServer serves the dispatches of a scheduler in the agent's own
// process (emberd with its in-process agent) by a function call: no gRPC
// connection, TLS or copies on the way, which measured about half a
// millisecond of latency and of CPU per warm invocation
// (BenchmarkStageBudget's dispatch stage). It answers as the gRPC server
// does: a request over dispatchpb.MaxMessageBytes is refused
// (ResourceExhausted), a caller whose context is done gets its status at
// once, new dispatches are refused (Unavailable) from the moment serving
// stops, those in flight are waited for and cut off at the shutdown
// timeout (Unavailable). One difference: a caller that cancels returns
// when the agent has stopped the handler, not before (over gRPC the agent
// stops it after the caller left).
//
// The call runs on the caller's goroutine: no hand-off between threads,
// which is what costs here (see docs/architecture.md, the budget).
type localServer struct {
	a *Agent

	mu       sync.Mutex
	stopped  bool
	inflight sync.WaitGroup
	// cut is cancelled to cut off dispatches in flight.
	cut       context.Context
	cutCancel context.CancelFunc
}

var _ dispatchpb.AgentClient = (*localServer)(nil)

// LocalClient returns a client whose dispatches call this agent directly,
// for a scheduler in the same process.
func (a *Agent) LocalClient() dispatchpb.AgentClient { return a.local }

func newLocalServer(a *Agent) *localServer {
	l := &localServer{a: a}
	l.cut, l.cutCancel = context.WithCancel(context.Background())
	return l
}

// Dispatch implements dispatchpb.AgentClient: the agent's Dispatch, with
// its errors as gRPC statuses exactly as a remote caller gets them.
func (l *localServer) Dispatch(ctx context.Context, req *dispatchpb.DispatchRequest, _ ...grpc.CallOption) (*dispatchpb.DispatchResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	if n := proto.Size(req); n > dispatchpb.MaxMessageBytes {
		return nil, status.Errorf(codes.ResourceExhausted, "dispatch request of %d bytes, over the %d byte limit", n, dispatchpb.MaxMessageBytes)
	}
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "agent not serving")
	}
	l.inflight.Add(1)
	l.mu.Unlock()
	defer l.inflight.Done()
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(l.cut, cancel)()
	resp, err := l.a.dispatch(dctx, req)
	if err != nil && l.cut.Err() != nil && ctx.Err() == nil {
		// Cut off at shutdown, not by the caller: as a stopped server's.
		return nil, status.Error(codes.Unavailable, "agent stopped during the dispatch")
	}
	return resp, err
}

// stop refuses new dispatches.
func (l *localServer) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

// wait waits for the dispatches in flight.
func (l *localServer) wait() { l.inflight.Wait() }

// cutOff cancels the dispatches in flight.
func (l *localServer) cutOff() { l.cutCancel() }
