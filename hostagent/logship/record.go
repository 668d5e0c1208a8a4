package logship

import (
	"strings"
	"time"
	"unicode/utf8"

	collogs "go.opentelemetry.io/proto/slim/otlp/collector/logs/v1"
	common "go.opentelemetry.io/proto/slim/otlp/common/v1"
	logs "go.opentelemetry.io/proto/slim/otlp/logs/v1"
	resource "go.opentelemetry.io/proto/slim/otlp/resource/v1"
)

// Resource is where records come from: one container of a function version.
type Resource struct {
	Tenant, Function, Version string
	// Instance is the instance's id, Stream the container's log stream.
	Instance, Stream string
}

// Record is one log record.
type Record struct {
	Time time.Time
	// Body is a line of output (without its newline) or a REPORT line.
	Body         string
	InvocationID string
	// Report, when set, makes this a platform.report record carrying its figures.
	Report *Report
}

// Report are an invocation's figures, as in its REPORT line.
type Report struct {
	DurationMs        float64
	BilledDurationMs  int64
	MemorySizeMB      int64
	MaxMemoryUsedMB   int64
	InitDurationMs    float64
	CPUMs             float64
	Status, ErrorType string
}

// Kinds of record (attribute ember.record).
const (
	KindFunction = "function"
	KindReport   = "platform.report"
)

func str(k, v string) *common.KeyValue {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_IntValue{IntValue: v}}}
}

func dbl(k string, v float64) *common.KeyValue {
	return &common.KeyValue{Key: k, Value: &common.AnyValue{Value: &common.AnyValue_DoubleValue{DoubleValue: v}}}
}

var scope = &common.InstrumentationScope{Name: "ember-init"}

// encode builds one export request, a ResourceLogs per resource in the
// order they first appear.
func encode(batch []entry) *collogs.ExportLogsServiceRequest {
	req := &collogs.ExportLogsServiceRequest{}
	byRes := map[*Resource]*logs.ScopeLogs{}
	now := uint64(time.Now().UnixNano())
	for _, e := range batch {
		sl := byRes[e.res]
		if sl == nil {
			sl = &logs.ScopeLogs{Scope: scope}
			byRes[e.res] = sl
			req.ResourceLogs = append(req.ResourceLogs, &logs.ResourceLogs{
				Resource: &resource.Resource{Attributes: []*common.KeyValue{
					str("service.name", e.res.Function), str("faas.name", e.res.Function),
					str("faas.version", e.res.Version), str("faas.instance", e.res.Stream),
					str("ember.tenant", e.res.Tenant), str("ember.instance", e.res.Instance),
				}},
				ScopeLogs: []*logs.ScopeLogs{sl},
			})
		}
		sl.LogRecords = append(sl.LogRecords, record(e.rec, now))
	}
	return req
}

func record(r Record, now uint64) *logs.LogRecord {
	lr := &logs.LogRecord{
		TimeUnixNano: uint64(r.Time.UnixNano()), ObservedTimeUnixNano: now,
		Body:       &common.AnyValue{Value: &common.AnyValue_StringValue{StringValue: strings.ToValidUTF8(r.Body, "\uFFFD")}},
		Attributes: []*common.KeyValue{str("faas.invocation_id", r.InvocationID)},
	}
	if r.Report == nil {
		lr.Attributes = append(lr.Attributes, str("ember.record", KindFunction))
		return lr
	}
	p := r.Report
	lr.SeverityNumber, lr.SeverityText = logs.SeverityNumber_SEVERITY_NUMBER_INFO, "INFO"
	lr.Attributes = append(lr.Attributes, str("ember.record", KindReport),
		dbl("ember.duration_ms", p.DurationMs), num("ember.billed_duration_ms", p.BilledDurationMs),
		num("ember.memory_size_mb", p.MemorySizeMB), str("ember.status", p.Status))
	if p.MaxMemoryUsedMB > 0 {
		lr.Attributes = append(lr.Attributes, num("ember.max_memory_used_mb", p.MaxMemoryUsedMB), dbl("ember.cpu_ms", p.CPUMs))
	}
	if p.InitDurationMs > 0 {
		lr.Attributes = append(lr.Attributes, dbl("ember.init_duration_ms", p.InitDurationMs))
	}
	if p.ErrorType != "" {
		lr.Attributes = append(lr.Attributes, str("ember.error_type", p.ErrorType))
	}
	return lr
}
