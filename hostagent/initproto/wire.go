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
	return readFields(b, func(num protowire.Number, n uint64, s []byte) {
		switch num {
		case 1:
			v.ID = string(s)
		case 2:
			v.ContainerID = string(s)
		case 3:
			v.DeadlineUnixMs = int64(n)
		case 4:
			v.TraceID = string(s)
		case 5:
			v.FunctionARN = string(s)
		case 6:
			v.LogService = string(s)
		}
	})
}

func (v Result) appendWire(b []byte) []byte {
	b = appendString(b, 1, v.ID)
	b = appendString(b, 2, v.Status)
	b = appendString(b, 3, v.ErrorType)
	b = appendVarint(b, 4, uint64(v.HandlerStartUnixNs))
	b = appendVarint(b, 5, uint64(v.DurationNs))
	b = appendVarint(b, 6, uint64(v.InitDurationNs))
	if len(v.LogTail) > 0 {
		b = protowire.AppendTag(b, 7, protowire.BytesType)
		b = protowire.AppendBytes(b, v.LogTail)
	}
	b = appendVarint(b, 8, uint64(v.LogTruncatedBytes))
	b = appendString(b, 9, v.Error)
	if s := v.LogStats; s != nil {
		var m []byte
		m = appendString(m, 1, s.ID)
		m = appendVarint(m, 2, uint64(s.Sent))
		m = appendVarint(m, 3, uint64(s.Dropped))
		m = appendVarint(m, 4, uint64(s.Failed))
		b = protowire.AppendTag(b, 10, protowire.BytesType)
		b = protowire.AppendBytes(b, m)
	}
	return b
}

func (v *Result) readWire(b []byte) error {
	*v = Result{}
	var statsErr error
	err := readFields(b, func(num protowire.Number, n uint64, s []byte) {
		switch num {
		case 1:
			v.ID = string(s)
		case 2:
			v.Status = string(s)
		case 3:
			v.ErrorType = string(s)
		case 4:
			v.HandlerStartUnixNs = int64(n)
		case 5:
			v.DurationNs = int64(n)
		case 6:
			v.InitDurationNs = int64(n)
		case 7:
			v.LogTail = append([]byte(nil), s...)
		case 8:
			v.LogTruncatedBytes = int64(n)
		case 9:
			v.Error = string(s)
		case 10:
			st := &LogStats{}
			statsErr = readFields(s, func(num protowire.Number, n uint64, s []byte) {
				switch num {
				case 1:
					st.ID = string(s)
				case 2:
					st.Sent = int64(n)
				case 3:
					st.Dropped = int64(n)
				case 4:
					st.Failed = int64(n)
				}
			})
			v.LogStats = st
		}
	})
	return errors.Join(err, statsErr)
}

// appendString and appendVarint leave out zero values, as protobuf does.
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendVarint(b []byte, num protowire.Number, n uint64) []byte {
	if n == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, n)
}

// readFields calls field for each varint (n) and length-delimited (s)
// field of b; fields of other types are skipped.
func readFields(b []byte, field func(num protowire.Number, n uint64, s []byte)) error {
	for len(b) > 0 {
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return fmt.Errorf("%w: %w", errWire, protowire.ParseError(m))
		}
		b = b[m:]
		switch typ {
		case protowire.VarintType:
			n, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return fmt.Errorf("%w: field %d: %w", errWire, num, protowire.ParseError(m))
			}
			field(num, n, nil)
			b = b[m:]
		case protowire.BytesType:
			s, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return fmt.Errorf("%w: field %d: %w", errWire, num, protowire.ParseError(m))
			}
			field(num, 0, s)
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return fmt.Errorf("%w: field %d: %w", errWire, num, protowire.ParseError(m))
			}
			b = b[m:]
		}
	}
	return nil
}
