package hostagent

import (
	"context"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/hostagent/dispatchpb"
)

// localServer serves the dispatches of a scheduler in the agent's own
// process (emberd with its in-process agent) by a function call: no gRPC
// connection, TLS or copies on the way, which measured about half a
// millisecond of latency and of CPU per warm invocation
// (BenchmarkStageBudget's dispatch stage). It behaves as the gRPC server
// does at shutdown: new dispatches are refused (Unavailable) once serving
// stops, those in flight are waited for, and cut off (their context
// cancelled) at the shutdown timeout.
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
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return nil, status.Error(codes.Unavailable, "agent not serving")
	}
	l.inflight.Add(1)
	l.mu.Unlock()
	defer l.inflight.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(l.cut, cancel)()
	return l.a.dispatch(ctx, req)
}

// drain refuses new dispatches and waits for those in flight.
func (l *localServer) drain() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.inflight.Wait()
}

// cutOff cancels the dispatches in flight.
func (l *localServer) cutOff() { l.cutCancel() }
