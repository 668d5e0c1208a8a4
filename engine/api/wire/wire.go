// Package wire holds the JSON documents of Ember's HTTP API, shared by the
// server (engine/api) and its Go client (engine/api/client) so the two
// cannot drift. It has no behaviour and no dependencies.
package wire

import (
	"encoding/json"
	"time"
)

// Headers of the invoke response.
const (
	HeaderStatus       = "X-Ember-Status"
	HeaderVersion      = "X-Ember-Version"
	HeaderStart        = "X-Ember-Start"
	HeaderDurationMs   = "X-Ember-Duration-Ms"
	HeaderLogTail      = "X-Ember-Log-Tail"
	HeaderInvocationID = "X-Ember-Invocation-Id"
	HeaderErrorType    = "X-Ember-Error-Type"
	// HeaderLogTruncated is how many bytes of the invocation's output were
	// dropped for being over the per-invocation limit (absent: none).
	HeaderLogTruncated = "X-Ember-Log-Truncated"
	// HeaderInvocationType "Event" makes an invoke asynchronous: 202 with
	// the invocation id at once ("RequestResponse", the default: wait).
	HeaderInvocationType = "X-Ember-Invocation-Type"
	// HeaderNeededBy (RFC 3339, with Event) defers the invocation: it runs
	// when the pool has idle capacity, and always early enough to end by
	// this time.
	HeaderNeededBy = "X-Ember-Needed-By"
)

// Error types carried in ErrorBody.
const (
	ErrNotFound     = "NotFound"
	ErrInvalid      = "Invalid"
	ErrConflict     = "Conflict"
	ErrTooLarge     = "TooLarge"
	ErrUnavailable  = "Unavailable"
	ErrUnauthorized = "Unauthorized"
	ErrForbidden    = "Forbidden"
	ErrInternal     = "Internal"
)

// ErrorBody is every error response: {"error":{"type":..,"message":..}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error.
type ErrorDetail struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// FunctionConfig is the "config" part of PUT /v1/functions/{name}. Omitted
// fields keep their current value on update and take the defaults on create.
type FunctionConfig struct {
	Handler   string            `json:"handler,omitempty"`
	Runtime   string            `json:"runtime,omitempty"`
	MemoryMB  int64             `json:"memory_mb,omitempty"`
	TimeoutMs int64             `json:"timeout_ms,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	// Network is "egress" (the default) or "none".
	Network string `json:"network,omitempty"`
	// SubPool names a sub-pool of the tenant the function must run in;
	// "-" clears it.
	SubPool string `json:"subpool,omitempty"`
	// LogService names the tenant's logging service the function's output
	// goes to ("none": none, "-": back to the tenant's default).
	LogService string `json:"log_service,omitempty"`
	// State replaces the function's state mounts (an empty list clears
	// them; omitted keeps them).
	State *[]StateMount `json:"state,omitempty"`
	// SkipPreload (this deploy only, not stored): do not load the new
	// $LATEST on the idle instances that ran the old one.
	SkipPreload bool `json:"skip_preload,omitempty"`
}

// StateMount is a resource of the tenant mounted read-write at Path
// (/mnt/<dir>) in the function's containers; SizeMB (default 64) is its
// quota, set when a host first creates it.
type StateMount struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	SizeMB int64  `json:"size_mb,omitempty"`
}

// Function is a function as the API shows it.
type Function struct {
	Tenant     string            `json:"tenant"`
	Name       string            `json:"name"`
	Handler    string            `json:"handler"`
	Runtime    string            `json:"runtime"`
	MemoryMB   int64             `json:"memory_mb"`
	TimeoutMs  int64             `json:"timeout_ms"`
	Env        map[string]string `json:"env,omitempty"`
	Network    string            `json:"network"`
	SubPool    string            `json:"subpool,omitempty"`
	State      []StateMount      `json:"state,omitempty"`
	LogService string            `json:"log_service,omitempty"`
	CodeDigest string            `json:"code_digest"`
	CodeSize   int64             `json:"code_size"`
	ConfigHash string            `json:"config_hash"`
	Versions   []string          `json:"versions"`
	Created    time.Time         `json:"created"`
	Updated    time.Time         `json:"updated"`
	// Preloaded (in a deploy's answer) is how many idle instances that ran
	// the previous $LATEST hold the new one already: their next invocation
	// is a hot start.
	Preloaded int `json:"preloaded,omitempty"`
}

// Version is a published version.
type Version struct {
	Tenant     string            `json:"tenant"`
	Function   string            `json:"function"`
	Version    string            `json:"version"`
	Handler    string            `json:"handler"`
	Runtime    string            `json:"runtime"`
	MemoryMB   int64             `json:"memory_mb"`
	TimeoutMs  int64             `json:"timeout_ms"`
	Env        map[string]string `json:"env,omitempty"`
	Network    string            `json:"network"`
	SubPool    string            `json:"subpool,omitempty"`
	State      []StateMount      `json:"state,omitempty"`
	CodeDigest string            `json:"code_digest"`
	CodeSize   int64             `json:"code_size"`
	ConfigHash string            `json:"config_hash"`
	Created    time.Time         `json:"created"`
	// Preloaded (in a publish's answer) is how many idle instances that ran
	// $LATEST hold the version already.
	Preloaded int `json:"preloaded,omitempty"`
}

// Functions is GET /v1/functions.
type Functions struct {
	Functions []Function `json:"functions"`
}

// Binding is PUT /v1/bindings/{id}'s body and every binding shown. On PUT,
// id and tenant come from the path and header; omitted optional fields take
// their defaults (package consumers/settings has them and their limits);
// Enabled defaults to true, MaxRetryAttempts to 2.
type Binding struct {
	ID        string `json:"id"`
	Tenant    string `json:"tenant"`
	Function  string `json:"function"`
	Qualifier string `json:"qualifier,omitempty"`
	Topic     string `json:"topic"`
	GroupID   string `json:"group_id,omitempty"`
	// Batching.
	BatchSize     int   `json:"batch_size,omitempty"`
	BatchWindowMs int64 `json:"batch_window_ms,omitempty"`
	MaxBatchBytes int   `json:"max_batch_bytes,omitempty"`
	// StartingPosition is trim_horizon, latest (default) or at_timestamp
	// (from StartingTimestamp); "earliest" means trim_horizon.
	StartingPosition  string    `json:"starting_position,omitempty"`
	StartingTimestamp time.Time `json:"starting_timestamp,omitzero"`
	// Ordering is partition (default), key or none; MaxConcurrency bounds
	// the batches in flight per partition with key and none.
	Ordering       string `json:"ordering,omitempty"`
	MaxConcurrency int    `json:"max_concurrency,omitempty"`
	// Error controls.
	MaxRetryAttempts        *int  `json:"max_retry_attempts,omitempty"`
	MaxRecordAgeS           int64 `json:"max_record_age_s,omitempty"`
	BisectOnError           bool  `json:"bisect_on_error,omitempty"`
	ReportBatchItemFailures bool  `json:"report_batch_item_failures,omitempty"`
	// Filters are event-filtering patterns (JSON objects) over a record's
	// value, key and headers; a record matching none is not invoked.
	Filters        []json.RawMessage `json:"filters,omitempty"`
	IsolationLevel string            `json:"isolation_level,omitempty"`
	ResultTopic    string            `json:"result_topic,omitempty"`
	DLQTopic       string            `json:"dlq_topic,omitempty"`
	// Rewind is the newest rewind asked for (read-only here: POST
	// /v1/bindings/{id}/rewind asks for one).
	Rewind  *Rewind   `json:"rewind,omitempty"`
	Enabled *bool     `json:"enabled,omitempty"`
	Created time.Time `json:"created,omitzero"`
}

// Rewind is POST /v1/bindings/{id}/rewind's body: a timestamp, or offsets
// per partition. Shown with its id in a Binding.
type Rewind struct {
	ID      int64         `json:"id,omitempty"`
	To      time.Time     `json:"to,omitzero"`
	Offsets map[int]int64 `json:"offsets,omitempty"`
}

// Redrive is POST /v1/bindings/{id}/redrive's body: the dead-lettered
// records of the binding written in [From, To) (zero: from the start, to
// the time of the request) are invoked again.
type Redrive struct {
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
}

// AsyncConfig is PUT /v1/functions/{name}/async: how asynchronous
// invocations of the function are retried and where their outcomes go
// ("topic:NAME" or "function:NAME").
type AsyncConfig struct {
	MaxRetryAttempts   *int   `json:"max_retry_attempts,omitempty"` // 0..2, default 2
	MaxEventAgeSeconds int64  `json:"max_event_age_seconds,omitempty"`
	OnSuccess          string `json:"on_success,omitempty"`
	OnFailure          string `json:"on_failure,omitempty"`
}

// Accepted answers an asynchronous invoke (202).
type Accepted struct {
	InvocationID string `json:"invocation_id"`
}

// Invocation is GET /v1/invocations/{id}: an asynchronous invocation.
type Invocation struct {
	ID        string    `json:"id"`
	Function  string    `json:"function"`
	Qualifier string    `json:"qualifier,omitempty"`
	State     string    `json:"state"` // queued, deferred, running, succeeded, failed
	Attempts  int       `json:"attempts"`
	Enqueued  time.Time `json:"enqueued"`
	Updated   time.Time `json:"updated"`
	// Started is when the first attempt started.
	Started time.Time `json:"started,omitzero"`
	// NeededBy and LatestStart are a deferred invocation's.
	NeededBy    time.Time `json:"needed_by,omitzero"`
	LatestStart time.Time `json:"latest_start,omitzero"`
	// Status of the last attempt; Condition: Success, RetriesExhausted or
	// EventAgeExceeded; Result its payload (cut at 256 KiB).
	Status          string `json:"status,omitempty"`
	Condition       string `json:"condition,omitempty"`
	Version         string `json:"version,omitempty"`
	Result          []byte `json:"result,omitempty"`
	ResultTruncated bool   `json:"result_truncated,omitempty"`
	Delivered       string `json:"delivered,omitempty"`
}

// Route maps HTTP requests on the gateway (http://GATEWAY/TENANT/PATH) to
// a function, as an API Gateway HTTP API route. PUT /v1/routes creates or
// replaces the route of Method and Path.
type Route struct {
	// Method is GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY.
	Method string `json:"method"`
	// Path is a template: /orders/{id}; a last {rest+} takes the rest.
	Path      string `json:"path"`
	Function  string `json:"function"`
	Qualifier string `json:"qualifier,omitempty"`
	// Public routes take requests without the tenant's API key.
	Public       bool  `json:"public,omitempty"`
	CORS         *CORS `json:"cors,omitempty"`
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	TimeoutMs    int64 `json:"timeout_ms,omitempty"`
	// Mapping replaces the payload format 2.0 event and the response
	// mapping with templates (docs/configuration.md).
	Mapping *Mapping  `json:"mapping,omitempty"`
	Created time.Time `json:"created,omitzero"`
	// URL is where the gateway serves it (path parameters as written).
	URL string `json:"url,omitempty"`
}

// CORS is a route's cross-origin policy.
type CORS struct {
	AllowOrigins     []string `json:"allow_origins,omitempty"`
	AllowMethods     []string `json:"allow_methods,omitempty"`
	AllowHeaders     []string `json:"allow_headers,omitempty"`
	ExposeHeaders    []string `json:"expose_headers,omitempty"`
	MaxAgeSeconds    int      `json:"max_age_seconds,omitempty"`
	AllowCredentials bool     `json:"allow_credentials,omitempty"`
}

// Mapping is a route's custom mapping definition.
type Mapping struct {
	Request  json.RawMessage  `json:"request,omitempty"`
	Response *ResponseMapping `json:"response,omitempty"`
}

// ResponseMapping shapes the HTTP response from the function's result.
type ResponseMapping struct {
	StatusCode int               `json:"status_code,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       json.RawMessage   `json:"body,omitempty"`
}

// Routes is GET /v1/routes.
type Routes struct {
	Routes []Route `json:"routes"`
}

// DeadLetters is GET /v1/bindings/{id}/dlq: the binding's latest
// dead-lettered records, newest first.
type DeadLetters struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
}

// DeadLetter is one dead-lettered record. At is when it was dead-lettered:
// a redrive of [at, at+1ms) feeds it to the function again.
type DeadLetter struct {
	At        time.Time `json:"at"`
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Reason    string    `json:"reason"`
	ErrorType string    `json:"error_type,omitempty"`
	Status    string    `json:"status,omitempty"`
	Attempts  int       `json:"attempts"`
	// Topic, SourcePartition, SourceOffset and SourceTime are the record's
	// origin.
	Topic           string    `json:"topic"`
	SourcePartition int       `json:"source_partition"`
	SourceOffset    int64     `json:"source_offset"`
	SourceTime      time.Time `json:"source_time"`
	// Key and Value (base64 in JSON) are cut at 1 KiB; ValueTruncated says
	// so. ValueDropped is set when the value was too large to dead-letter.
	Key            []byte `json:"key,omitempty"`
	Value          []byte `json:"value,omitempty"`
	ValueTruncated bool   `json:"value_truncated,omitempty"`
	ValueDropped   string `json:"value_dropped,omitempty"`
}

// RedriveResult is what a redrive did.
type RedriveResult struct {
	// Scanned counts dead-letter records read in the range, Redriven those
	// of the binding that the function then handled, DeadLettered those
	// that failed again (written anew to the dead-letter topic).
	Scanned      int64 `json:"scanned"`
	Redriven     int64 `json:"redriven"`
	DeadLettered int64 `json:"dead_lettered"`
}

// Bindings is GET /v1/bindings.
type Bindings struct {
	Bindings []Binding `json:"bindings"`
}

// Record is one record to produce. Value and Key are taken as UTF-8 text.
type Record struct {
	Key     string            `json:"key,omitempty"`
	Value   string            `json:"value"`
	Headers map[string]string `json:"headers,omitempty"`
}

// ProduceRequest is POST /v1/topics/{topic}/records.
type ProduceRequest struct {
	Records []Record `json:"records"`
}

// ProduceResponse acknowledges a produce.
type ProduceResponse struct {
	Topic    string `json:"topic"`
	Produced int    `json:"produced"`
}

// Agent is a live host agent.
type Agent struct {
	ID      string    `json:"id"`
	Addr    string    `json:"addr"`
	Started time.Time `json:"started"`
}

// Occupancy counts one resource class's instances.
type Occupancy struct {
	Class  string `json:"class"`
	Warm   int    `json:"warm"`
	Active int    `json:"active"`
	Busy   int    `json:"busy"`
	// Waiting counts invocations of this emberd waiting for an instance.
	Waiting int `json:"waiting"`
	// Waited counts this emberd's latest invocations of the class that had
	// to wait (up to 256), WaitP50Ms and WaitP99Ms how long they waited.
	Waited    int     `json:"waited,omitempty"`
	WaitP50Ms float64 `json:"wait_p50_ms,omitempty"`
	WaitP99Ms float64 `json:"wait_p99_ms,omitempty"`
}

// SubPool is a variable sub-pool of the warming pool, reserved for one
// tenant (PUT /v1/subpools/{name}, administrator).
type SubPool struct {
	Name     string  `json:"name"`
	Tenant   string  `json:"tenant"`
	MemoryMB int64   `json:"memory_mb"`
	VCPU     float64 `json:"vcpu,omitempty"`
	TmpMB    int64   `json:"tmp_mb,omitempty"`
	Pids     int64   `json:"pids,omitempty"`
	Network  string  `json:"network,omitempty"`
	MinWarm  int     `json:"min_warm"`
	Max      int     `json:"max"`
	// Class is the pool class of its instances, as shown in occupancy.
	Class string `json:"class,omitempty"`
}

// SubPools is GET /v1/subpools.
type SubPools struct {
	SubPools []SubPool `json:"subpools"`
}

// Lag is how far a binding's consumer group is behind: offsets read when
// asked, the time lag, and the lag monitor's verdict over its window.
type Lag struct {
	At time.Time `json:"at"`
	// Records is the offset lag over all partitions; Seconds the age of the
	// oldest record not committed, over all partitions (0: no lag).
	Records int64   `json:"records"`
	Seconds float64 `json:"seconds"`
	// Status is OK, REWIND, WARN, STALL, STOP or ERR (docs/metrics.md), the
	// worst of the partitions'; Reason says why.
	Status string `json:"status"`
	Reason string `json:"reason"`
	// ConsumeRate and ProduceRate are records per second over the window;
	// DrainSeconds estimates the time to drain at those rates (0: no lag,
	// -1: the lag does not shrink).
	ConsumeRate  float64        `json:"consume_rate"`
	ProduceRate  float64        `json:"produce_rate"`
	DrainSeconds float64        `json:"drain_seconds"`
	Members      int            `json:"members"`
	Partitions   []PartitionLag `json:"partitions"`
}

// PartitionLag is one partition's consumer lag.
type PartitionLag struct {
	Partition int `json:"partition"`
	// Start is the oldest retained offset, End the next to be written,
	// Committed the group's next record (-1: never committed).
	Start        int64   `json:"start"`
	End          int64   `json:"end"`
	Committed    int64   `json:"committed"`
	Lag          int64   `json:"lag"`
	Seconds      float64 `json:"seconds"`
	Status       string  `json:"status"`
	Reason       string  `json:"reason"`
	ConsumeRate  float64 `json:"consume_rate"`
	ProduceRate  float64 `json:"produce_rate"`
	DrainSeconds float64 `json:"drain_seconds"`
	Error        string  `json:"error,omitempty"`
}

// LagHistory is a binding's lag with its samples over a past period.
type LagHistory struct {
	Binding string `json:"binding"`
	Lag     Lag    `json:"lag"`
	// IntervalSeconds is the time between samples.
	IntervalSeconds float64            `json:"interval_seconds"`
	History         []PartitionHistory `json:"history"`
}

// PartitionHistory is one partition's lag samples, oldest first.
type PartitionHistory struct {
	Partition int        `json:"partition"`
	Points    []LagPoint `json:"points"`
}

// LagPoint is one sample: T in Unix milliseconds, Lag in records, Seconds
// of time lag.
type LagPoint struct {
	T       int64   `json:"t"`
	Lag     int64   `json:"lag"`
	Seconds float64 `json:"seconds"`
}

// BindingStatus is a binding with its lag and recent activity.
type BindingStatus struct {
	Binding
	Lag *Lag `json:"lag,omitempty"`
	// LagError is set when lag could not be read.
	LagError string `json:"lag_error,omitempty"`
	// Activity is what this emberd's consumers did for the binding since it
	// started; absent when it has not invoked anything.
	Activity *Activity `json:"activity,omitempty"`
}

// LagPartitions returns the binding's partitions with their lag (none when
// lag could not be read).
func (b BindingStatus) LagPartitions() []PartitionLag {
	if b.Lag == nil {
		return nil
	}
	return b.Lag.Partitions
}

// Activity summarises a binding's invocations on one emberd.
type Activity struct {
	Invocations    int64 `json:"invocations"`
	Records        int64 `json:"records"`
	FunctionErrors int64 `json:"function_errors"`
	PlatformErrors int64 `json:"platform_errors"`
	// Of this emberd's consumers, now: records not invoked because they
	// matched no filter, lost to retention before they were read (each gap
	// is logged as an error), dead-lettered (AgeDropped of them for their
	// age), fetched and unfinished; partitions owned in consumer-group
	// generation Generation; generations joined.
	Filtered      int64 `json:"filtered"`
	Expired       int64 `json:"expired"`
	DeadLettered  int64 `json:"dead_lettered"`
	AgeDropped    int64 `json:"age_dropped"`
	InFlight      int64 `json:"in_flight"`
	Partitions    int64 `json:"partitions"`
	Generation    int64 `json:"generation"`
	Rebalances    int64 `json:"rebalances"`
	HotStarts     int64 `json:"hot_starts"`
	PoolHitStarts int64 `json:"pool_hit_starts"`
	ColdStarts    int64 `json:"cold_starts"`
	// EventToStart is from the batch's oldest record's Kafka timestamp
	// (millisecond precision) to the handler receiving the batch from
	// /next; FetchToStart starts at the consumer's fetch instead. Both are
	// over the most recent invocations (Window of them at most).
	EventToStartP50Ms float64 `json:"event_to_start_p50_ms"`
	EventToStartP99Ms float64 `json:"event_to_start_p99_ms"`
	FetchToStartP50Ms float64 `json:"fetch_to_start_p50_ms"`
	FetchToStartP99Ms float64 `json:"fetch_to_start_p99_ms"`
	Window            int     `json:"window"`
	// EventToStart is the histogram of the same window: invocations per
	// bucket of event-to-handler-start latency.
	EventToStart []LatencyBucket `json:"event_to_start,omitempty"`
}

// LatencyBucket counts invocations whose latency was at most LeMs
// milliseconds and above the previous bucket's (LeMs 0: above every bucket).
type LatencyBucket struct {
	LeMs  float64 `json:"le_ms"`
	Count int     `json:"count"`
}

// Status is GET /v1/status.
type Status struct {
	Agents    []Agent         `json:"agents"`
	Occupancy []Occupancy     `json:"occupancy"`
	Bindings  []BindingStatus `json:"bindings"`
	// State are the tenant's state resources per host (all of them for
	// the administrator).
	State []StateResource `json:"state"`
	// Usage is what the tenant's functions used through this emberd since
	// it started (every tenant's for the administrator).
	Usage []FunctionUsage `json:"usage"`
	// Profiles are the tenant's task profiles (every tenant's for the
	// administrator): which function follows which.
	Profiles []TaskProfile `json:"profiles"`
}

// TaskProfile is what Ember learned about function To following function
// From in a tenant. Counts decay (emberd --predict-half-life): they weigh
// recent runs.
type TaskProfile struct {
	Tenant    string `json:"tenant"`
	From      string `json:"from"`
	To        string `json:"to"`
	Qualifier string `json:"qualifier"`
	// Runs of From, and Follows: runs of To that From caused.
	Runs    float64 `json:"runs"`
	Follows float64 `json:"follows"`
	// Probability is Follows / Runs (at most 1).
	Probability float64 `json:"probability"`
	// DelayMs: From's handler start to To's, typically.
	DelayMs float64 `json:"delay_ms"`
	// LoadMs: how long loading To ahead took, typically.
	LoadMs float64 `json:"load_ms"`
	// Predictions loaded To ahead; Hits were used by To's next invocation
	// there. Predictions - Hits were wrong (or not yet used).
	Predictions float64 `json:"predictions"`
	Hits        float64 `json:"hits"`
}

// FunctionUsage sums a function's invocations on one emberd.
type FunctionUsage struct {
	Tenant          string  `json:"tenant"`
	Function        string  `json:"function"`
	Invocations     int64   `json:"invocations"`
	Errors          int64   `json:"errors"`
	DurationMs      float64 `json:"duration_ms"`
	CPUMs           float64 `json:"cpu_ms"`
	MaxMemoryUsedMB int64   `json:"max_memory_used_mb"`
	GBSeconds       float64 `json:"gb_seconds"`
}

// StateResource is a tenant's state resource on one host.
type StateResource struct {
	Agent     string `json:"agent"`
	Tenant    string `json:"tenant"`
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	UsedBytes int64  `json:"used_bytes"`
	// Attached counts the host's instances it is attached to.
	Attached int `json:"attached"`
}

// Whoami is GET /v1/whoami: who the presented key belongs to.
type Whoami struct {
	Tenant string `json:"tenant,omitempty"`
	Admin  bool   `json:"admin,omitempty"`
}

// Tenant is a tenant as the administrator sees it.
type Tenant struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Rotated time.Time `json:"rotated"`
	Revoked bool      `json:"revoked,omitempty"`
}

// Tenants is GET /v1/tenants.
type Tenants struct {
	Tenants []Tenant `json:"tenants"`
}

// CreateTenant is POST /v1/tenants.
type CreateTenant struct {
	Name string `json:"name"`
}

// TenantKey answers creating a tenant and rotating its key: the only time
// the key is shown.
type TenantKey struct {
	Name   string `json:"name"`
	APIKey string `json:"api_key"`
}

// CreateTopic is POST /v1/topics: a topic in the tenant's namespace. A name
// without the "<tenant>." prefix gets it.
type CreateTopic struct {
	Name string `json:"name"`
	// Partitions defaults to 4.
	Partitions int `json:"partitions,omitempty"`
}

// Topic is a Kafka topic a tenant owns or was granted.
type Topic struct {
	Name       string            `json:"name"`
	Owner      string            `json:"owner,omitempty"`
	Partitions int               `json:"partitions,omitempty"`
	Grants     map[string]string `json:"grants,omitempty"`
	Created    time.Time         `json:"created"`
}

// Topics is GET /v1/topics.
type Topics struct {
	Topics []Topic `json:"topics"`
}

// Grant is PUT /v1/topics/{topic}/grants/{tenant}: access is consume,
// produce or all.
type Grant struct {
	Access string `json:"access"`
}

// Alias is POST /v1/functions/{name}/aliases's body (create),
// PUT /v1/functions/{name}/aliases/{alias}'s (replace) and every alias
// shown: a name for a version, optionally splitting invocations with extra
// versions by weight.
type Alias struct {
	Name     string `json:"name"`
	Function string `json:"function"`
	// Version is "$LATEST" (the default) or a published version.
	Version string `json:"version,omitempty"`
	// Extra maps published versions to the share of invocations (0..1)
	// each gets, e.g. {"4": 0.1}; not with $LATEST.
	Extra       map[string]float64 `json:"extra,omitempty"`
	Description string             `json:"description,omitempty"`
	Created     time.Time          `json:"created,omitzero"`
	Updated     time.Time          `json:"updated,omitzero"`
}

// Aliases is GET /v1/functions/{name}/aliases.
type Aliases struct {
	Aliases []Alias `json:"aliases"`
}

// HeaderLogService, on an invoke, names the tenant's logging service the
// invocation's output goes to ("none": none), over its function's.
const HeaderLogService = "X-Ember-Log-Service"

// LogService is a tenant's logging service (OTLP/HTTP logs). Credentials
// go in (BearerToken, BasicAuth or Authorization) and never come out: an
// answer says only which kind is set.
type LogService struct {
	Name string `json:"name"`
	// Endpoint is the http(s) URL records are POSTed to (default path /v1/logs).
	Endpoint string `json:"endpoint"`
	// BearerToken sends "Authorization: Bearer <token>".
	BearerToken string `json:"bearer_token,omitempty"`
	// BasicAuth is "user:password": "Authorization: Basic <base64>".
	BasicAuth string `json:"basic_auth,omitempty"`
	// Authorization is the header's whole value, for other schemes.
	Authorization string `json:"authorization,omitempty"`
	// Default makes it the service of the tenant's functions that name none.
	Default bool `json:"default,omitempty"`
	// Credentials (answers only): "bearer", "basic", "other" or "none".
	Credentials string    `json:"credentials,omitempty"`
	Revision    int64     `json:"revision,omitempty"`
	Created     time.Time `json:"created,omitzero"`
	Updated     time.Time `json:"updated,omitzero"`
}

// LogServices lists a tenant's logging services.
type LogServices struct {
	LogServices []LogService `json:"log_services"`
}
