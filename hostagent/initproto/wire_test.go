package initproto

import (
	"reflect"
	"strings"
	"testing"
)

// TestWireAfterUseWire: headers go as JSON until UseWire, then Invoke and
// Result go in the wire format while other headers stay JSON; the reader
// decodes either into the same values.
func TestWireAfterUseWire(t *testing.T) {
	a, b := pair(t)
	inv := Invoke{ID: "inv-1", ContainerID: "c1", DeadlineUnixMs: 1_800_000_000_123, TraceID: "Root=1-2-3",
		FunctionARN: "arn:aws:lambda:local:t:function:f", LogService: "svc-1"}
	res := Result{ID: "inv-1", Status: StatusFunctionError, ErrorType: "Boom", HandlerStartUnixNs: -5, DurationNs: 7,
		InitDurationNs: 1 << 40, LogTail: []byte("line\n\x00\xff"), LogTruncatedBytes: 3, Error: "e",
		LogStats: &LogStats{ID: "svc-1", Sent: 1, Dropped: 2, Failed: 3}}
	stop := Stop{ContainerID: "c1", GraceMs: 10}
	for _, wire := range []bool{false, true} {
		if wire {
			a.UseWire()
		}
		for _, h := range []any{inv, res, stop} {
			if err := a.Write(TypeInvoke, 1, h, []byte("body")); err != nil {
				t.Fatal(err)
			}
			f, err := b.Read()
			if err != nil {
				t.Fatal(err)
			}
			_, wants := h.(wireAppender)
			if f.Wire() != (wire && wants) {
				t.Fatalf("%T after UseWire=%v: wire header %v", h, wire, f.Wire())
			}
			got := reflect.New(reflect.TypeOf(h))
			if err := f.Decode(got.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Elem().Interface(), h) || string(f.Body) != "body" {
				t.Fatalf("%T (wire %v): got %+v, want %+v", h, f.Wire(), got.Elem().Interface(), h)
			}
		}
	}
	// A wire header read into a type without a wire format is an error.
	if err := a.Write(TypeResult, 2, res, nil); err != nil {
		t.Fatal(err)
	}
	f, err := b.Read()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Decode(&Stop{}); err == nil || !strings.Contains(err.Error(), "no wire format") {
		t.Fatalf("decode into Stop: %v", err)
	}
}

// FuzzWire: a Result survives the wire format unchanged, and any bytes
// read as one give a Result or an error, never a panic.
func FuzzWire(f *testing.F) {
	f.Add("inv-1", "ok", []byte("tail"), int64(1), int64(-1), true, []byte{0x0a, 0x01, 'x'})
	f.Add("", "", []byte(nil), int64(0), int64(0), false, []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, id, status string, tail []byte, start, dur int64, stats bool, junk []byte) {
		r := Result{ID: id, Status: status, LogTail: tail, HandlerStartUnixNs: start, DurationNs: dur}
		if len(r.LogTail) == 0 {
			r.LogTail = nil
		}
		if stats {
			r.LogStats = &LogStats{ID: id, Sent: start, Failed: dur}
		}
		var got Result
		if err := got.readWire(r.appendWire(nil)); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
		_ = got.readWire(junk)
		var inv Invoke
		_ = inv.readWire(junk)
	})
}
