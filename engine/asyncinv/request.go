package asyncinv

import (
	"encoding/json"
	"time"
)

// Request is one queued asynchronous invocation, as JSON on the queue topic.
type Request struct {
	ID        string    `json:"id"`
	Tenant    string    `json:"tenant"`
	Function  string    `json:"function"`
	Qualifier string    `json:"qualifier,omitempty"`
	Payload   []byte    `json:"payload"`
	Enqueued  time.Time `json:"enqueued"`
	TraceID   string    `json:"trace_id,omitempty"`
	// NeededBy (deferred executions only) is when the result is needed;
	// LatestStart is when it must start at the latest to end by then.
	NeededBy    time.Time `json:"needed_by,omitzero"`
	LatestStart time.Time `json:"latest_start,omitzero"`
}

// Conditions of a destination record.
const (
	CondSuccess          = "Success"
	CondRetriesExhausted = "RetriesExhausted"
	CondEventAgeExceeded = "EventAgeExceeded"
)

// Record is what a destination receives: Lambda's destination record.
type Record struct {
	Version         string          `json:"version"`
	Timestamp       time.Time       `json:"timestamp"`
	RequestContext  RecordRequest   `json:"requestContext"`
	RequestPayload  json.RawMessage `json:"requestPayload"`
	ResponseContext RecordResponse  `json:"responseContext"`
	ResponsePayload json.RawMessage `json:"responsePayload,omitempty"`
}

// RecordRequest identifies the invocation and how it ended.
type RecordRequest struct {
	RequestID string `json:"requestId"`
	// FunctionArn is "tenant/function:qualifier" (Ember has no ARNs).
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

// RecordResponse is the last attempt's outcome.
type RecordResponse struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion,omitempty"`
	FunctionError   string `json:"functionError,omitempty"`
}

// asJSON is b when it is JSON, else b as a JSON string.
func asJSON(b []byte) json.RawMessage {
	if len(b) > 0 && json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}
