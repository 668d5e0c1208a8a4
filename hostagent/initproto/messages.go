package initproto

import "github.com/ember-run/ember/hostagent/logship"

// Type identifies a frame.
type Type uint8

const (
	// TypeHello is sent by ember-init right after the agent connects.
	TypeHello Type = iota + 1
	// TypeStart asks ember-init to start a function container. Its fds are
	// the container's cgroup handles, named in StartContainer.FDNames.
	TypeStart
	// TypeStarted answers TypeStart.
	TypeStarted
	// TypeInvoke hands one invocation to a running container; body is the payload.
	TypeInvoke
	// TypeResult answers TypeInvoke; body is the response or error document.
	TypeResult
	// TypeStop stops a container (SIGTERM, grace, SIGKILL).
	TypeStop
	// TypeStopped answers TypeStop.
	TypeStopped
	// TypeExited is an event: a container's process exited on its own.
	TypeExited
	// TypeLogConfig configures the instance's logging service (the
	// credentials travel only in this frame); TypeLogConfigured answers it.
	TypeLogConfig
	TypeLogConfigured
	// TypeReport is an event from the agent: an invocation's REPORT, for
	// the logging service it ran with. No reply.
	TypeReport
	// TypeNetns asks for a network namespace set aside for a container to
	// come (StartContainer.Netns), so that the agent connects it to a
	// network ahead of time; TypeNetnsReady answers with it (FDNetns).
	// Namespaces set aside are the connection's: they are closed when it
	// ends.
	TypeNetns
	TypeNetnsReady
	// TypeCall is an event from ember-init: the function running an
	// invocation asked, through its Runtime API, for another function's
	// result and waits for it (Call; body is the payload). TypeCallResult
	// is the agent's event back (CallResult; body is the result), once the
	// call ran; the invocation carries on. Neither has a reply.
	TypeCall
	TypeCallResult
	// TypeReady is an event from ember-init, sent when StartContainer asked
	// for it (ReportReady): a process of the container asked for its first
	// invocation, its start-up is over (Ready). No reply.
	TypeReady
)

// FD names used in StartContainer.FDNames.
const (
	// FDCgroup2 is an O_DIRECTORY fd of the container's cgroup2 directory,
	// used with clone3(CLONE_INTO_CGROUP).
	FDCgroup2 = "cgroup2"
	// FDTasksPrefix + controller ("memory", "cpu", "pids") is an fd of that v1
	// controller's tasks file; the spawning thread writes "0" to join it.
	FDTasksPrefix = "tasks:"
	// FDNetns, in Started, is the container's network namespace, for the
	// agent to connect it to a network.
	FDNetns = "netns"
)

// Hello is the first frame ember-init sends on a connection.
type Hello struct {
	InstanceID string `json:"instance_id"`
	Pid        int    `json:"pid"`
	Version    string `json:"version"`
	// Containers are the ids of the containers ember-init holds (started
	// and not stopped), sorted: what an agent that reconnects, after a
	// restart, finds still there.
	Containers []string `json:"containers,omitempty"`
	// Wire says ember-init reads Invoke in the wire format (wire.go) and
	// then answers in it.
	Wire bool `json:"wire,omitempty"`
	// Ready says ember-init sends TypeReady when a start asks for it
	// (StartContainer.ReportReady).
	Ready bool `json:"ready,omitempty"`
}

// StartContainer describes one function container to start inside the instance.
type StartContainer struct {
	ContainerID string `json:"container_id"`
	// CodeDir is the directory under the instance's code mount (see
	// CodeMount) that becomes the container's /var/task.
	CodeDir string `json:"code_dir"`
	// Handler is exported as _HANDLER.
	Handler      string            `json:"handler"`
	FunctionName string            `json:"function_name"`
	Version      string            `json:"version"`
	MemoryMB     int64             `json:"memory_mb"`
	TimeoutMs    int64             `json:"timeout_ms"`
	Env          map[string]string `json:"env,omitempty"`
	// FDNames names the fds sent with this frame, in order.
	FDNames []string `json:"fd_names,omitempty"`
	// LogGroup and LogStream are exported as AWS_LAMBDA_LOG_GROUP_NAME/_STREAM_NAME.
	LogGroup  string `json:"log_group,omitempty"`
	LogStream string `json:"log_stream,omitempty"`
	// DeferSpawn creates the container without starting its process: the
	// first Invoke starts it. The agent sets it when it connects the
	// container's network namespace (from Started) to a network first.
	DeferSpawn bool `json:"defer_spawn,omitempty"`
	// Preload (on a container that exists) starts its process ahead of its
	// next invocation: that invocation is not its first, and reports no
	// init duration.
	Preload bool `json:"preload,omitempty"`
	// State are the tenant's resources the container sees read-write: the
	// agent has attached each under StateDir.
	State []StateMount `json:"state,omitempty"`
	// Netns names a network namespace set aside with TypeNetns that the
	// container takes instead of a new one ("" for a new one).
	Netns string `json:"netns,omitempty"`
	// ReportReady asks for a TypeReady event at each of the container's
	// processes' first GET /next: the agent ends the start's CPU boost then.
	ReportReady bool `json:"report_ready,omitempty"`
}

// Ready is TypeReady's event: container ContainerID's process is ready.
type Ready struct {
	ContainerID string `json:"container_id"`
}

// Netns is TypeNetns's request and NetnsReady its answer (with FDNetns
// unless Error, Release or Adopt is set). Release gives the namespace set
// aside as ID back instead (closed; its answer has no fd; an unknown ID is
// no error). Adopt sets aside the namespace the request carries (FDNetns),
// which the agent made in the instance's user namespace while the instance
// started (its answer has no fd).
type Netns struct {
	ID      string `json:"id"`
	Release bool   `json:"release,omitempty"`
	Adopt   bool   `json:"adopt,omitempty"`
	Error   string `json:"error,omitempty"`
}

// StateMount binds StateDir/Dir at Path (/mnt/<name>) in a container.
type StateMount struct {
	Dir  string `json:"dir"`
	Path string `json:"path"`
}

// Started answers StartContainer. Its fds are named in FDNames (the
// container's network namespace, FDNetns).
type Started struct {
	ContainerID string `json:"container_id"`
	// Pid is the process's (its shim's) pid in the instance; 0 with DeferSpawn.
	Pid int `json:"pid,omitempty"`
	// UID is the uid the container's processes run as.
	UID     int      `json:"uid,omitempty"`
	FDNames []string `json:"fd_names,omitempty"`
	// Error is set when the container could not be started.
	Error string `json:"error,omitempty"`
}

// Invoke is one invocation for a running container.
type Invoke struct {
	ID             string `json:"id"`
	ContainerID    string `json:"container_id"`
	DeadlineUnixMs int64  `json:"deadline_unix_ms"`
	TraceID        string `json:"trace_id,omitempty"`
	FunctionARN    string `json:"function_arn,omitempty"`
	// LogService, when it is the ID of the instance's LogConfig, sends the
	// invocation's output to that logging service.
	LogService string `json:"log_service,omitempty"`
}

// LogConfig makes a logging service the instance's (replacing the previous
// one, whose buffered records are still sent). Configuring the current ID
// again changes nothing.
type LogConfig struct {
	// ID names the service and its revision (Invoke.LogService, relay
	// connections' first line).
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	// Authorization is the service's credentials, the Authorization
	// header's value. ember-init keeps it in memory only and never logs it.
	Authorization string `json:"authorization,omitempty"`
	// RootCAsPEM verify an https endpoint (the host's trust store).
	RootCAsPEM []byte `json:"root_cas_pem,omitempty"`
	// Tenant and Instance are resource attributes of every record.
	Tenant   string `json:"tenant"`
	Instance string `json:"instance"`
}

// LogConfigured answers LogConfig.
type LogConfigured struct {
	ID    string `json:"id"`
	Error string `json:"error,omitempty"`
}

// LogStats are ember-init's counts of records for its logging service
// (since it was configured): sent, dropped (buffer full) and failed.
type LogStats struct {
	ID      string `json:"id"`
	Sent    int64  `json:"sent"`
	Dropped int64  `json:"dropped"`
	Failed  int64  `json:"failed"`
}

// Report is an invocation's REPORT, sent by the agent once it measured the
// invocation, for the logging service the invocation ran with.
type Report struct {
	ContainerID  string `json:"container_id"`
	InvocationID string `json:"invocation_id"`
	LogService   string `json:"log_service"`
	// Line is the REPORT line; the figures go as attributes too.
	Line string `json:"line"`
	logship.Report
}

// Result statuses, mirroring dispatchpb.Status.
const (
	StatusOK            = "ok"
	StatusFunctionError = "function_error"
	StatusTimeout       = "timeout"
	StatusCrashed       = "crashed"
)

// Result answers Invoke.
type Result struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// ErrorType is the runtime's Lambda-Runtime-Function-Error-Type or errorType.
	ErrorType string `json:"error_type,omitempty"`
	// HandlerStartUnixNs is when GET /next returned this invocation.
	HandlerStartUnixNs int64 `json:"handler_start_unix_ns"`
	DurationNs         int64 `json:"duration_ns"`
	// InitDurationNs is set on a container's first invocation: spawn to first /next.
	InitDurationNs int64 `json:"init_duration_ns,omitempty"`
	// LogTail is the end of the container's output during the invocation.
	LogTail []byte `json:"log_tail,omitempty"`
	// LogTruncatedBytes is how much of the invocation's output was dropped
	// for being over ember-init's per-invocation limit.
	LogTruncatedBytes int64 `json:"log_truncated_bytes,omitempty"`
	// Error is set when ember-init itself could not run the invocation
	// (unknown container, malformed request): a platform error.
	Error string `json:"error,omitempty"`
	// LogStats, with a logging service configured, are its counts so far.
	LogStats *LogStats `json:"log_stats,omitempty"`
}

// Call asks for a run of another function on behalf of invocation
// InvocationID of container ContainerID, whose function waits for the
// result (Lambda's Invoke API, RequestResponse).
type Call struct {
	InvocationID string `json:"invocation_id"`
	ContainerID  string `json:"container_id"`
	// Function and Qualifier name what to run, in the invocation's tenant.
	Function  string `json:"function"`
	Qualifier string `json:"qualifier,omitempty"`
	// CallID tells this call from an earlier one of the same invocation
	// whose caller hung up (ember-init numbers them); its CallResult
	// carries it back.
	CallID uint64 `json:"call_id,omitempty"`
}

// CallResult is how a Call ended: Status is a Result status; Error, with
// an empty Status, says the platform could not run it.
type CallResult struct {
	InvocationID string `json:"invocation_id"`
	ContainerID  string `json:"container_id"`
	// CallID is the Call's: a result for another call of the invocation
	// (one whose caller hung up) answers nobody. Zero, from an agent of
	// before the field (rolled back over instances it left running),
	// answers whichever call waits; ember-inits of before the field ignore
	// it (an agent upgrade keeps their instances).
	CallID    uint64 `json:"call_id,omitempty"`
	Status    string `json:"status,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Stop asks for a container to be stopped.
type Stop struct {
	ContainerID string `json:"container_id"`
	GraceMs     int64  `json:"grace_ms"`
}

// Stopped answers Stop. Stopping an unknown container is success.
type Stopped struct {
	ContainerID string `json:"container_id"`
}

// Exited reports that a container's process ended outside a Stop.
type Exited struct {
	ContainerID string `json:"container_id"`
	ExitCode    int    `json:"exit_code"`
	Signal      string `json:"signal,omitempty"`
}

// Paths inside every instance.
const (
	// SocketDir is where ember-init creates SocketName; the agent bind-mounts
	// a host directory, owned by the instance's mapped root, there.
	SocketDir  = "/ember/sock"
	SocketName = "init.sock"
	// CodeMount is the read-only bind mount holding one directory per
	// function version delivered to this instance.
	CodeMount = "/ember/code"
	// TaskDir is where a container sees its code.
	TaskDir = "/var/task"
	// LogDir is the read-write bind mount where ember-init keeps the
	// functions' output (rotated, bounded); containers do not see it.
	LogDir = "/ember/logs"
	// StateDir is where the agent attaches the tenant's state resources
	// (a mount that receives the host's new mounts); containers see only
	// those named in their StartContainer.State, under /mnt.
	StateDir = "/ember/state"
	// StateMountParent is the directory state resources are mounted under
	// in a container.
	StateMountParent = "/mnt"
	// RelayName, in SocketDir, is the agent's relay socket: the only way
	// out of an instance, for ember-init's connections to its logging
	// service. A connection's first line is the LogConfig ID it is for;
	// the agent then connects it to that service's endpoint.
	RelayName = "relay.sock"
)
