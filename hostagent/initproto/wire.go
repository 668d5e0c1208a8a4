package initproto

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The hot pair, Invoke and Result, can travel in protobuf's wire format
// instead of JSON: an invocation's headers cost ember-init and the agent
// about a tenth of their CPU per warm invocation in encoding/json. A wire
// header starts with wireMark (a JSON header starts with '{'), so a reader
// tells them apart frame by frame. A writer uses it only once its peer
// said it reads it: ember-init in Hello.Wire, the agent by sending a wire
// Invoke (ember-init answers in the encoding it was asked in). Agents and
// ember-inits of other versions keep talking JSON to each other.
//
// Field numbers are the wire format's contract: a reader skips numbers it
// does not know, and a number is never reused for another meaning.

// wireMark is a wire header's first byte.
const wireMark = 0xff

// wireAppender is a header that can be written in the wire format;
// wireReader one that can be read from it.
type (
	wireAppender interface{ appendWire(b []byte) []byte }
	wireReader   interface{ readWire(b []byte) error }
)

var errWire = errors.New("initproto: malformed wire header")

func (v Invoke) appendWire(b []byte) []byte {
	b = appendString(b, 1, v.ID)
	b = appendString(b, 2, v.ContainerID)
	b = appendVarint(b, 3, uint64(v.DeadlineUnixMs))
	b = appendString(b, 4, v.TraceID)
	b = appendString(b, 5, v.FunctionARN)
	return appendString(b, 6, v.LogService)
}

func (v *Invoke) readWire(b []byte) error {
	*v = Invoke{}
	return readFields(b, func(f field) error {
		switch f.num {
		case 1:
			f.str(&v.ID)
		case 2:
			f.str(&v.ContainerID)
		case 3:
			f.int(&v.DeadlineUnixMs)
		case 4:
			f.str(&v.TraceID)
		case 5:
			f.str(&v.FunctionARN)
		case 6:
			f.str(&v.LogService)
		}
		return nil
	})
}

func (v Result) appendWire(b []byte) []byte {
	b = appendString(b, 1, v.ID)
	b = appendString(b, 2, v.Status)
	b = appendString(b, 3, v.ErrorType)
	b = appendVarint(b, 4, uint64(v.HandlerStartUnixNs))
	b = appendVarint(b, 5, uint64(v.DurationNs))
	b = appendVarint(b, 6, uint64(v.InitDurationNs))
	b = appendBytes(b, 7, v.LogTail)
	b = appendVarint(b, 8, uint64(v.LogTruncatedBytes))
	b = appendString(b, 9, v.Error)
	if s := v.LogStats; s != nil {
		var m []byte
		m = appendString(m, 1, s.ID)
		m = appendVarint(m, 2, uint64(s.Sent))
		m = appendVarint(m, 3, uint64(s.Dropped))
		m = appendVarint(m, 4, uint64(s.Failed))
		b = protowire.AppendTag(b, 10, protowire.BytesType) // even empty: LogStats is set
		b = protowire.AppendBytes(b, m)
	}
	return b
}

func (v *Result) readWire(b []byte) error {
	*v = Result{}
	return readFields(b, func(f field) error {
		switch f.num {
		case 1:
			f.str(&v.ID)
		case 2:
			f.str(&v.Status)
		case 3:
			f.str(&v.ErrorType)
		case 4:
			f.int(&v.HandlerStartUnixNs)
		case 5:
			f.int(&v.DurationNs)
		case 6:
			f.int(&v.InitDurationNs)
		case 7:
			f.bytes(&v.LogTail)
		case 8:
			f.int(&v.LogTruncatedBytes)
		case 9:
			f.str(&v.Error)
		case 10:
			if f.typ != protowire.BytesType {
				return nil
			}
			st := &LogStats{}
			v.LogStats = st
			return readFields(f.s, func(f field) error {
				switch f.num {
				case 1:
					f.str(&st.ID)
				case 2:
					f.int(&st.Sent)
				case 3:
					f.int(&st.Dropped)
				case 4:
					f.int(&st.Failed)
				}
				return nil
			})
		}
		return nil
	})
}

// appendString, appendBytes and appendVarint leave out zero values, as
// protobuf does.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, s []byte) []byte {
	if len(s) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, s)
}

func appendVarint(b []byte, num protowire.Number, n uint64) []byte {
	if n == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, n)
}

// field is one field of a wire header: its value n for a varint, s for
// a length-delimited one. str, bytes and int set a value only from a field of
// their type; a field of another type is skipped, as one not known.
// bytes keeps f.s itself: a frame's header is its own (Conn.Read copies).
type field struct {
	num protowire.Number
	typ protowire.Type
	n   uint64
	s   []byte
}

func (f field) str(dst *string) {
	if f.typ == protowire.BytesType {
		*dst = string(f.s)
	}
}

func (f field) bytes(dst *[]byte) {
	if f.typ == protowire.BytesType {
		*dst = f.s
	}
}

func (f field) int(dst *int64) {
	if f.typ == protowire.VarintType {
		*dst = int64(f.n)
	}
}

// readFields calls fn for each field of b, in order, and stops at its
// first error or at a malformed field.
func readFields(b []byte, fn func(field) error) error {
	for len(b) > 0 {
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return fmt.Errorf("%w: %w", errWire, protowire.ParseError(m))
		}
		b = b[m:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.n, m = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			f.s, m = protowire.ConsumeBytes(b)
		default:
			m = protowire.ConsumeFieldValue(num, typ, b)
		}
		if m < 0 {
			return fmt.Errorf("%w: field %d: %w", errWire, num, protowire.ParseError(m))
		}
		b = b[m:]
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}
