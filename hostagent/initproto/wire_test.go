package initproto

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
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

// FuzzWire: Invoke and Result survive the wire format unchanged and as
// JSON would carry them; fields a reader does not know, or known numbers
// with another type, are skipped; any bytes read as either give a value
// or an error, never a panic.
func FuzzWire(f *testing.F) {
	f.Add("inv-1", "ok", []byte("tail"), int64(1), int64(-1), true, []byte{0x0a, 0x01, 'x'})
	f.Add("", "", []byte(nil), int64(0), int64(0), false, []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, id, status string, tail []byte, start, dur int64, stats bool, junk []byte) {
		r := Result{ID: id, Status: status, ErrorType: status, LogTail: tail, HandlerStartUnixNs: start, DurationNs: dur,
			InitDurationNs: -dur, LogTruncatedBytes: start, Error: id}
		if len(r.LogTail) == 0 {
			r.LogTail = nil
		}
		if stats {
			r.LogStats = &LogStats{ID: id, Sent: start, Dropped: -start, Failed: dur}
		}
		inv := Invoke{ID: id, ContainerID: status, DeadlineUnixMs: start, TraceID: id, FunctionARN: status, LogService: id}
		// Another writer's fields: unknown numbers of every type, and
		// known numbers with the wrong type.
		var extra []byte
		extra = protowire.AppendTag(extra, 99, protowire.VarintType)
		extra = protowire.AppendVarint(extra, 7)
		extra = protowire.AppendTag(extra, 98, protowire.Fixed64Type)
		extra = protowire.AppendFixed64(extra, 7)
		extra = protowire.AppendTag(extra, 97, protowire.BytesType)
		extra = protowire.AppendBytes(extra, junk)
		for _, num := range []protowire.Number{1, 3, 7, 10} {
			extra = protowire.AppendTag(extra, num, protowire.Fixed32Type)
			extra = protowire.AppendFixed32(extra, 7)
		}
		for _, c := range []struct {
			want, got interface {
				wireAppender
				wireReader
			}
		}{{&r, &Result{}}, {&inv, &Invoke{}}} {
			if err := c.got.readWire(append(c.want.appendWire(nil), extra...)); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.got, c.want) {
				t.Fatalf("round trip: got %+v, want %+v", c.got, c.want)
			}
			if utf8.ValidString(id) && utf8.ValidString(status) {
				b, err := json.Marshal(c.want)
				if err != nil {
					t.Fatal(err)
				}
				viaJSON := reflect.New(reflect.TypeOf(c.want).Elem()).Interface()
				if err := json.Unmarshal(b, viaJSON); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(viaJSON, c.got) {
					t.Fatalf("JSON gives %+v, the wire format %+v", viaJSON, c.got)
				}
			}
		}
		var got Result
		_ = got.readWire(junk)
		_ = inv.readWire(junk)
	})
}
