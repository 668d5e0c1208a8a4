package initd

import (
	"testing"
	"time"

	"github.com/ember-run/ember/hostagent/initproto"
)

// TestLateAnswerIsTimeout: an answer after the deadline is a timeout
// (Sandbox.Timedout), one at or before it keeps its status; a crash
// stays a crash.
func TestLateAnswerIsTimeout(t *testing.T) {
	deadline := time.UnixMilli(1_000_000)
	at := func(d time.Duration) int64 { return deadline.Add(d).UnixNano() }
	for _, c := range []struct {
		in   outcome
		want string
	}{
		{outcome{status: initproto.StatusOK, at: at(-time.Millisecond)}, initproto.StatusOK},
		{outcome{status: initproto.StatusOK, at: at(0)}, initproto.StatusOK},
		{outcome{status: initproto.StatusOK, at: at(time.Microsecond)}, initproto.StatusTimeout},
		{outcome{status: initproto.StatusFunctionError, errType: "DeadlineExceeded", at: at(300 * time.Microsecond)}, initproto.StatusTimeout},
		{outcome{status: initproto.StatusCrashed, at: at(time.Second)}, initproto.StatusCrashed},
		{outcome{status: initproto.StatusOK}, initproto.StatusOK}, // no answer time known
	} {
		got := late(c.in, deadline)
		if got.status != c.want || (c.want == initproto.StatusTimeout && got.errType != "Sandbox.Timedout") {
			t.Errorf("late(%+v) = %+v, want %s", c.in, got, c.want)
		}
	}
}
