package hostagent

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/internal/testenv"
)

// TestLocalClientShutsDownLikeTheServer: dispatches through LocalClient
// run like remote ones; at shutdown one in flight finishes while a new one
// is refused with Unavailable, as gRPC's graceful stop does.
func TestLocalClientShutsDownLikeTheServer(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m128": 1}}, nil)
	ctx := context.Background()
	local := h.agent.LocalClient()
	c := h.claim("acme", "m128", "")
	resp, err := local.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{"n":1}`))
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || string(resp.Payload) != `{"n":1}` {
		t.Fatalf("local dispatch: %v %v", resp, err)
	}
	if _, err := local.Dispatch(ctx, h.req("no-such-instance", "acme", "echo", `{}`)); status.Code(err) != codes.NotFound {
		t.Fatalf("local dispatch to an unknown instance: %v, want NotFound as over gRPC", err)
	}

	fi := h.rt.get(c.InstanceID)
	release := fi.holdInvokes()
	held := make(chan error, 1)
	go func() {
		resp, err := local.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", "hold"))
		if err == nil && resp.Status != dispatchpb.Status_STATUS_OK {
			err = status.Errorf(codes.Internal, "status %v", resp.Status)
		}
		held <- err
	}()
	testenv.Eventually(t, 10*time.Second, "the held invocation running", func() bool { return len(fi.eventLog()) == 2 })
	h.cancel() // the agent stops serving and waits for the held dispatch
	testenv.Eventually(t, 10*time.Second, "new local dispatches refused", func() bool {
		_, err := local.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{}`))
		return status.Code(err) == codes.Unavailable
	})
	release()
	if err := <-held; err != nil {
		t.Fatalf("the dispatch in flight at shutdown: %v", err)
	}
	h.cancel = func() {} // stop() below only waits
	h.stop()
}
