package emberd

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSON appends r encoded exactly as encoding/json encodes it (the
// usage topic's format: FuzzUsageRecordJSON compares the two) without
// reflection, which cost about 0.04 ms of emberd's CPU per invocation on
// a slow VM. It reports false, appending nothing, for what it leaves to
// encoding/json: a float that is NaN or infinite or a start before year 0
// or past 9999 (refused there too), a start not in UTC (usageRecord's
// always is).
func (r *UsageRecord) appendJSON(b []byte) ([]byte, bool) {
	if bad(r.DurationMs) || bad(r.GBSeconds) || r.Start.Location() != time.UTC || r.Start.Year() < 0 || r.Start.Year() > 9999 {
		return b, false
	}
	b = appendJSONString(append(b, `{"tenant":`...), r.Tenant)
	b = appendJSONString(append(b, `,"function":`...), r.Function)
	b = appendJSONString(append(b, `,"version":`...), r.Version)
	b = appendJSONString(append(b, `,"invocation_id":`...), r.InvocationID)
	if r.Source != "" {
		b = appendJSONString(append(b, `,"source":`...), r.Source)
	}
	b = appendJSONString(append(b, `,"status":`...), r.Status)
	b = r.Start.AppendFormat(append(b, `,"start":"`...), time.RFC3339Nano)
	b = appendJSONString(append(b, `","start_kind":`...), r.StartKind)
	b = appendJSONFloat(append(b, `,"duration_ms":`...), r.DurationMs)
	b = strconv.AppendInt(append(b, `,"billed_ms":`...), r.BilledMs, 10)
	b = strconv.AppendInt(append(b, `,"memory_mb":`...), r.MemoryMB, 10)
	b = strconv.AppendInt(append(b, `,"max_memory_used_mb":`...), r.MaxMemoryUsedMB, 10)
	b = strconv.AppendInt(append(b, `,"cpu_ns":`...), r.CPUNs, 10)
	b = strconv.AppendInt(append(b, `,"rx_bytes":`...), r.RxBytes, 10)
	b = strconv.AppendInt(append(b, `,"tx_bytes":`...), r.TxBytes, 10)
	b = strconv.AppendInt(append(b, `,"rx_packets":`...), r.RxPackets, 10)
	b = strconv.AppendInt(append(b, `,"tx_packets":`...), r.TxPackets, 10)
	b = strconv.AppendBool(append(b, `,"network_measured":`...), r.NetworkMeasured)
	b = appendJSONFloat(append(b, `,"gb_seconds":`...), r.GBSeconds)
	if r.Accounting != "" {
		b = appendJSONString(append(b, `,"accounting":`...), r.Accounting)
	}
	if r.Agent != "" {
		b = appendJSONString(append(b, `,"agent":`...), r.Agent)
	}
	if r.Instance != "" {
		b = appendJSONString(append(b, `,"instance":`...), r.Instance)
	}
	return append(b, '}'), true
}

// appendJSONString appends s quoted as encoding/json quotes it: as is when
// it needs no escape (the usual name or id), else by encoding/json itself.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	return append(append(append(b, '"'), s...), '"')
}

// appendJSONFloat appends a finite f as encoding/json formats a float64:
// the shortest decimal that reads back as f, in exponent form only below
// 1e-6 or from 1e21 on, with a one-digit negative exponent unpadded.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// bad reports whether encoding/json refuses f.
func bad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }
