package predict

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/ember-run/ember/engine/invoke"
)

// A function learns which function it runs for from its trace header
// (Lambda-Runtime-Trace-Id, _X_AMZN_TRACE_ID in the process): Ember gives
// every invocation an X-Ray-shaped trace id with a field of its own,
// "Ember=FUNCTION@UNIX_MS". A function that invokes another through the
// API and passes that header on (X-Ember-Trace-Id or X-Amzn-Trace-Id, as
// tracing SDKs do for downstream calls) names itself as the cause.

const causeField = "Ember="

// stampTrace returns trace with the cause field naming function, started
// at now. An empty trace gets a new X-Ray-shaped root; one that is not
// X-Ray-shaped is left alone.
func stampTrace(trace, function string, now time.Time) string {
	cause := causeField + function + "@" + strconv.FormatInt(now.UnixMilli(), 10)
	if trace == "" {
		var b strings.Builder
		b.Grow(64 + len(function))
		b.WriteString("Root=1-")
		b.WriteString(hex(uint64(now.Unix()), 8))
		b.WriteByte('-')
		b.WriteString(hex(rand.Uint64(), 16))
		b.WriteString(hex(rand.Uint64(), 8))
		b.WriteByte(';')
		b.WriteString(cause)
		return b.String()
	}
	if !strings.HasPrefix(trace, "Root=") {
		return trace
	}
	fields := strings.Split(trace, ";")
	out := fields[:0]
	for _, f := range fields {
		if !strings.HasPrefix(f, causeField) {
			out = append(out, f)
		}
	}
	return strings.Join(append(out, cause), ";")
}

// causeFromTrace reads the cause field of an X-Ray-shaped trace id.
func causeFromTrace(trace string) invoke.Cause {
	i := strings.Index(trace, ";"+causeField)
	if i < 0 {
		return invoke.Cause{}
	}
	v := trace[i+1+len(causeField):]
	if j := strings.IndexByte(v, ';'); j >= 0 {
		v = v[:j]
	}
	fn, ms, ok := strings.Cut(v, "@")
	at, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil || !validName(fn) {
		return invoke.Cause{}
	}
	return invoke.Cause{Function: fn, Started: time.UnixMilli(at)}
}

// hex formats the low 4*digits bits of v as lower-case hex, zero-padded.
func hex(v uint64, digits int) string {
	const hexdigits = "0123456789abcdef"
	b := make([]byte, digits)
	for i := digits - 1; i >= 0; i-- {
		b[i] = hexdigits[v&0xf]
		v >>= 4
	}
	return string(b)
}

// validName accepts what a function name can be (letters, digits, - and _,
// at most 64): a cause from a header names nothing else.
func validName(fn string) bool {
	if fn == "" || len(fn) > 64 {
		return false
	}
	for _, r := range fn {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
