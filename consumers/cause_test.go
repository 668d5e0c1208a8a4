package consumers

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestCauseOf(t *testing.T) {
	rec := func(h ...string) *record {
		r := &record{}
		for i := 0; i+1 < len(h); i += 2 {
			r.msg.Headers = append(r.msg.Headers, kafka.Header{Key: h[i], Value: []byte(h[i+1])})
		}
		return r
	}
	from := func(fn string) *record { return rec(HeaderFunction, fn, HeaderStarted, "1800000000123") }
	c := causeOf("t1", []*record{from("t1/a"), rec(), from("t1/a"), from("t1/b")})
	if c.Function != "a" || c.Runs != 2 || !c.Started.Equal(time.UnixMilli(1800000000123)) {
		t.Fatalf("batch of a's results: %+v", c)
	}
	if c := causeOf("t1", []*record{from("t2/a")}); c.Function != "" {
		t.Fatalf("another tenant's function was taken as a cause: %+v", c)
	}
	if c := causeOf("t1", []*record{rec("other", "x"), from("t1/a")}); c.Function != "" {
		t.Fatalf("cause from a batch whose first record has none: %+v", c)
	}
	if c := causeOf("t1", []*record{rec(HeaderFunction, "t1/a", HeaderStarted, "soon")}); c.Function != "a" || !c.Started.IsZero() {
		t.Fatalf("bad start time: %+v", c)
	}
}
