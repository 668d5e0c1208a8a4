package invoke

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Invocation is one request to run a function version with a payload.
type Invocation struct {
	// ID is unique per invocation; NewID makes one.
	ID     string
	Tenant string
	// Function is the function's name within the tenant.
	Function string
	// Qualifier selects the version: "" or "$LATEST", a version number, or an alias.
	Qualifier string
	Payload   []byte
	// Deadline bounds the whole invocation, queueing included. Zero means
	// "now + the function's timeout".
	Deadline time.Time
	// TraceID is passed to the function (Lambda-Runtime-Trace-Id). An
	// invoker may rewrite it to name the function (engine/predict); what
	// it holds after Invoke is what the function saw.
	TraceID string
	// Source names what produced the invocation, e.g. a binding id or "api".
	Source string
	// FirstEventAt is when the oldest event in the payload was fetched (for
	// event-to-start latency). Zero for synchronous invokes.
	FirstEventAt time.Time
	// RunToEnd: once it holds an instance, the invocation runs to its end
	// (or its deadline) even if the caller's context is cancelled, as on
	// Lambda; the instance then goes back to the pool. Stopping it midway
	// would kill the function and destroy a warm instance. Waiting for an
	// instance still stops with the caller. Set for callers that may hang
	// up (HTTP clients); not for consumers, which must stop a revoked
	// partition's work.
	RunToEnd bool
	// HoldKey, when set, names a sequence of invocations made one after
	// another (a consumer's worker on one partition): the scheduler may
	// keep the instance between them and run the next on it without a
	// claim or release in Redis (engine/scheduler's held claims). Callers
	// whose invocations may overlap must not share a key.
	HoldKey string
	// Retry marks a retry of an invocation whose function failed (task
	// profiles count first attempts only).
	Retry bool
	// LogService names the tenant's logging service the invocation's
	// output goes to, over its function's ("" keeps the function's or the
	// tenant's default; "none" turns it off).
	LogService string
	// Cause is the execution this one follows from, when known (a record
	// another function's binding wrote to its result topic, or an API
	// invoke carrying a running invocation's trace id). Task profiles learn
	// from it; nothing else depends on it.
	Cause Cause
	// CallDepth counts the invocations this one was called from (a
	// function's call through the Invoke API its runtime serves; see
	// engine/scheduler's calls.go): 0 for an outside invocation.
	CallDepth int
}

// Cause names an earlier execution of a function of the same tenant.
type Cause struct {
	// Function is its function's name; "" when there is no known cause.
	Function string
	// Started is when its handler started.
	Started time.Time
	// Runs is how many of Function's executions this one follows (a batch
	// of the records they wrote); 0 means one.
	Runs int
}

// Status is how the function (not the platform) finished.
type Status int

const (
	StatusOK Status = iota + 1
	// StatusFunctionError: the handler returned an error.
	StatusFunctionError
	// StatusTimeout: the handler ran past its timeout and was stopped.
	StatusTimeout
	// StatusCrashed: the function's process exited or was killed mid-invocation.
	StatusCrashed
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusFunctionError:
		return "function_error"
	case StatusTimeout:
		return "timeout"
	case StatusCrashed:
		return "crashed"
	}
	return "unknown"
}

// StartKind says how warm the path to the handler was.
type StartKind int

const (
	// StartHot: the version's container was already running on a claimed instance.
	StartHot StartKind = iota + 1
	// StartPoolHit: a pre-started instance (warming or active pool) got a new
	// container for this version.
	StartPoolHit
	// StartCold: no instance was free; one was created for this invocation.
	StartCold
)

func (k StartKind) String() string {
	switch k {
	case StartHot:
		return "hot"
	case StartPoolHit:
		return "pool_hit"
	case StartCold:
		return "cold"
	}
	return "unknown"
}

// Result is what a function returned. Function failures live in Status; an
// error returned next to a Result means Ember itself failed.
type Result struct {
	InvocationID string
	Status       Status
	// Payload is the handler's response, or the error document for a failure.
	Payload   []byte
	ErrorType string
	// LogTail is the end of what the function wrote during the invocation.
	LogTail []byte
	// LogTruncatedBytes is how much of the invocation's output was dropped
	// for being over the per-invocation log limit.
	LogTruncatedBytes int64
	// Version is the resolved version number ("$LATEST" or "1", "2", ...).
	Version  string
	Agent    string
	Instance string
	Start    StartKind
	// HandlerStart is when the runtime received the invocation from /next.
	HandlerStart time.Time
	Duration     time.Duration
	// InitDuration is the container start time when Start is not StartHot.
	InitDuration time.Duration
	// Usage is what the invocation used; nil when the agent did not measure
	// it (accounting off, or a failure before the function ran).
	Usage *Usage
	// Timing is where the invocation's time went, stage by stage.
	Timing Timing
	// PreloadTag is set when the invocation was the first on a container a
	// pre-load started: the tag the pre-load carried (see
	// scheduler.LoadAhead).
	PreloadTag string
}

// Usage is one invocation's resource use, as deltas over the invocation.
type Usage struct {
	// CPU is the on-CPU time of the function's processes.
	CPU time.Duration
	// Wall is the agent's wall time of the invocation.
	Wall time.Duration
	// MemoryPeakBytes is the container's peak memory during the invocation.
	MemoryPeakBytes int64
	// MemorySizeMB is the container's configured memory (GB-seconds are
	// billed on it).
	MemorySizeMB int64
	// RxBytes ... TxPackets are IP traffic of the function's sockets, headers
	// included; zero unless NetworkMeasured.
	RxBytes, TxBytes     int64
	RxPackets, TxPackets int64
	NetworkMeasured      bool
	// Source is "ebpf" or "cgroup".
	Source string
}

// OK reports whether the function succeeded.
func (r Result) OK() bool { return r.Status == StatusOK }

// NewID returns a random 128-bit invocation id in hex.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux.
	return hex.EncodeToString(b[:])
}
