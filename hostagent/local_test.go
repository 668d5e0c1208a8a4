package hostagent

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ember-run/ember/hostagent/dispatchpb"
	"github.com/ember-run/ember/internal/testenv"
)

// TestLocalClientShutsDownLikeTheServer: dispatches through LocalClient
// run like remote ones; at shutdown, while a remote and a local one are in
// flight (and gRPC's graceful stop waits for the remote one), new local
// dispatches are refused with Unavailable, and both in flight finish.
func TestLocalClientShutsDownLikeTheServer(t *testing.T) {
	h := startHarness(t, Config{Pool: map[string]int{"m256": 1}}, nil)
	ctx := context.Background()
	local := h.agent.LocalClient()
	c := h.claim("acme", "m256", "")
	resp, err := local.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo", `{"n":1}`))
	if err != nil || resp.Status != dispatchpb.Status_STATUS_OK || string(resp.Payload) != `{"n":1}` {
		t.Fatalf("local dispatch: %v %v", resp, err)
	}
	if _, err := local.Dispatch(ctx, h.req("no-such-instance", "acme", "echo", `{}`)); status.Code(err) != codes.NotFound {
		t.Fatalf("local dispatch to an unknown instance: %v, want NotFound as over gRPC", err)
	}
	big := h.req(c.InstanceID, "acme", "echo", "")
	big.Payload = make([]byte, dispatchpb.MaxMessageBytes)
	if _, err := local.Dispatch(ctx, big); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("local dispatch over the message limit: %v, want ResourceExhausted as over gRPC", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := local.Dispatch(done, h.req(c.InstanceID, "acme", "echo", `{}`)); status.Code(err) != codes.Canceled {
		t.Fatalf("local dispatch with a cancelled context: %v, want Canceled", err)
	}

	fi := h.rt.get(c.InstanceID)
	release := fi.holdInvokes()
	held := make(chan error, 2)
	for _, d := range []struct {
		client dispatchpb.AgentClient
		fn     string
	}{{local, "echo"}, {h.client, "echo2"}} {
		go func() {
			resp, err := d.client.Dispatch(ctx, h.req(c.InstanceID, "acme", d.fn, "hold"))
			if err == nil && resp.Status != dispatchpb.Status_STATUS_OK {
				err = status.Errorf(codes.Internal, "%s: status %v", d.fn, resp.Status)
			}
			held <- err
		}()
	}
	testenv.Eventually(t, 10*time.Second, "both held invocations running", func() bool {
		n := 0
		for _, e := range fi.eventLog() {
			if strings.HasPrefix(e, "invoke ") {
				n++
			}
		}
		return n == 3
	})
	h.cancel() // the agent stops serving and waits for the held dispatches
	testenv.Eventually(t, 10*time.Second, "new local dispatches refused", func() bool {
		_, err := local.Dispatch(ctx, h.req(c.InstanceID, "acme", "echo3", `{}`))
		return status.Code(err) == codes.Unavailable
	})
	release()
	for range 2 {
		if err := <-held; err != nil {
			t.Fatalf("a dispatch in flight at shutdown: %v", err)
		}
	}
	h.cancel = func() {} // stop() below only waits
	h.stop()
}
