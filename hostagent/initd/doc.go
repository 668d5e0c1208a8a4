// Package initd is ember-init, the PID 1 of every instance. It listens on
// the agent socket (initproto.SocketDir/initproto.SocketName), accepts one
// host agent connection at a time (a new connection replaces and closes the
// previous one), sends Hello, then serves Start, Invoke and Stop requests,
// each on its own goroutine, so requests for different containers run
// concurrently. Replies go to the connection the request came on and echo
// its seq; a reply whose connection is gone is dropped. Exited events go to
// the current connection, if any. Containers outlive agent connections:
// Hello lists the containers held, so that an agent that restarted takes
// them back; with Config.OrphanTimeout, the server ends (its containers
// stopped) once no agent has been connected for that long.
//
// # Containers
//
// Start creates a container: a process tree running CodeMount/CodeDir's
// bootstrap, seen by the process at TaskDir (/var/task), read-only, in its
// own mount namespace, with a private 64 MiB tmpfs on /tmp, joined to the
// cgroups whose fds came with Start (each "tasks:<ctrl>" by writing "0" from
// the spawning thread, "cgroup2" through clone3 CLONE_INTO_CGROUP), with
// no_new_privs, an empty capability bounding set, uid/gid 1000 and its own
// process group. Without fds, cgroups are left alone (tests). Started
// carries the pid once the process is exec'd; it does not wait for the
// runtime to initialise (the first Invoke does, and reports the time in
// InitDurationNs).
//
// Start for a container id that is already known keeps the original spec
// and fds (fds sent with the repeat are closed) and only makes sure a
// process is running: it is idempotent. Started.Error is set when the
// request is malformed (fd count or names, CodeDir not a local path) or the
// process cannot be spawned (missing bootstrap, mount or exec failure).
//
// # Restarts: respawn on the next Invoke
//
// A container's spec and cgroup fds are kept until Stop. When its process
// ends for any reason other than Stop (it exits or crashes, it is killed
// for a timeout, it fails to initialise), ember-init sends Exited (seq 0)
// and forgets the process; the next Invoke for the container transparently
// spawns a new one and reports its InitDurationNs. The agent need not send
// Start again (it may; that is idempotent). Invoke fails with Result.Error
// ("not found") only for a container that was never started or was stopped.
//
// # Invoke
//
// One invocation runs at a time per container (further Invokes for the same
// container queue until their own deadline). The deadline is
// DeadlineUnixMs; zero means now + the container's TimeoutMs, or
// Config.DefaultTimeout. Outcomes, with the Result frame's body:
//   - ok: the function posted .../response; body is the response.
//   - function_error: it posted .../error (ErrorType from the
//     Lambda-Runtime-Function-Error-Type header, else the body's errorType,
//     else "Unhandled"), or posted init/error before taking the invocation
//     (ErrorType from that post), or its response exceeded
//     MaxResponseBytes (6 MB; "Function.ResponseSizeTooLarge", and the
//     runtime got 413). Body is the error document.
//   - timeout: no response by the deadline (an answer that arrives after
//     it, e.g. a handler's error when its context expired, is one too). The process group is SIGKILLed,
//     and so is everything left in the container's cgroup2 directory (a
//     handler's setsid'd children included), before the Result is sent;
//     a respawn waits for that cgroup to be empty. ErrorType
//     "Sandbox.Timedout".
//   - crashed: the process ended while the invocation was pending or
//     running; ErrorType "Runtime.ExitError", body names the exit status.
//
// Result.Error (with an empty Status) is a platform failure: unknown or
// stopped container, spawn failure, container busy past the deadline,
// shutdown. HandlerStartUnixNs is when GET /next returned the invocation,
// DurationNs from then to the response (or to the timeout), and LogTail the
// last LogTailBytes (4 KiB) of the output written during the invocation.
//
// # Runtime API
//
// Each process gets its own HTTP listener on 127.0.0.1:<ephemeral>, passed
// as AWS_LAMBDA_RUNTIME_API, serving the Lambda Runtime API 2018-06-01:
// GET invocation/next, POST invocation/{id}/response and /error (202; 400
// InvalidRequestID for an id that is not the current invocation), POST
// init/error. A per-process listener means a dead process's connections can
// never take an invocation meant for its successor.
//
// # Output
//
// A process's stdout and stderr share one pipe. Everything is copied, line
// by line and prefixed with the container id, to Config.Output (ember-init's
// stderr, which the agent logs to a file) and kept in a per-container ring.
// Before LogTail is taken the pipe is drained, so a line logged before the
// response is always in it.
//
// # Logging service
//
// LogConfig makes a logging service the instance's (one at a time; the
// previous one's buffered records are still sent for up to 10 s). Its
// credentials stay in this process's memory. An Invoke whose LogService is
// that service's ID sends every line its container writes from then on
// (until the container's next invocation) to a logship.Shipper, which
// connects through the agent's relay socket (initproto.RelayName); a
// Report frame adds the invocation's REPORT. Result.LogStats carries the
// shipper's counts. Nothing here waits for the service.
//
// # Reaping
//
// Container processes are started with syscall.ForkExec, never os/exec.
// With Config.ReapAll (PID 1), one reaper collects every exited child with
// wait4(-1, WNOHANG) on SIGCHLD; forks happen under the reaper's lock and
// register their pid, so a tracked pid's status always reaches its
// container, and any other child (an orphaned grandchild re-parented to
// PID 1) is simply reaped. Without ReapAll each process is waited for by
// pid, which leaves other children of the process (os/exec in tests) alone.
//
// The caller must lock the main goroutine to the main OS thread in an
// init() (runtime.LockOSThread), as cmd/ember-init does: spawning changes
// the namespaces and privileges of a dedicated thread that is then
// discarded, and the main thread must never be that thread.
package initd
