// Package hostagent is the host agent: the daemon on each host that owns its
// instances. It keeps a warming pool of started instances per resource class
// (containerd containers whose PID 1 is ember-init), registers itself and its
// instances in Redis (engine/pool) with a heartbeat, and serves Dispatch
// (hostagent/dispatchpb) to the engine's schedulers.
//
// Life of an instance:
//
//	start (Runtime.Create) ─► ember-init says Hello ─► AddWarm (warming pool)
//	  ─► first Dispatch with a tenant: bound to that tenant for good, a
//	     replacement starts in the background (refill)
//	  ─► per function version: code fetched and extracted once per instance,
//	     child cgroup created, Start, then Invoke; the container stays hot
//	  ─► a dispatch naming a logging service the instance is not configured
//	     for opens the instance's relay (hostagent/logrelay) and sends
//	     ember-init a LogConfig (credentials in that frame only); ember-init
//	     ships output and REPORTs there (hostagent/logship)
//	  ─► idle containers are stopped after ContainerKeepAlive (DropHot first),
//	     at most MaxContainersPerInstance live (least recently used evicted);
//	     a replaced or evicted container stops in the background
//	  ─► an instance idle past InstanceKeepAlive is retired (pool.Retire) and
//	     destroyed; a broken one (init connection lost) is force-retired,
//	     destroyed and replaced
//	  ─► at a clean stop with KeepInstances, an idle instance is left
//	     running with its containers and a record in its directory; the
//	     next start reconnects and puts it back, hot versions included
//	     (reattach.go). Otherwise, and after a crash, it is destroyed.
//
// The scheduler claims instances in Redis and then calls Dispatch; the agent
// learns of a claim only from the Dispatch. Two dispatches may run on an
// instance at once (a claim beside another: a newer version starting while
// an older one runs) when its memory holds both containers; the
// instance's op lock serialises only their container set-up, and a
// container in use is never evicted, reclaimed or stopped before its
// invocation ends. A Dispatch for an unknown instance is NotFound, for an
// instance running one with no memory left for another Aborted (the
// scheduler tries another instance), for another tenant's instance
// PermissionDenied (a platform error). A function failure (error, timeout, crash) is a normal
// response.
//
// The agent depends on small interfaces declared here (Runtime, Cgroups) so
// that its pool logic can be tested without containerd; production wiring
// uses hostagent/sandbox and hostagent/cgroup: ContainerdRuntime (or
// SandboxRuntime) and HostCgroups. To host the agent in-process (emberd),
// build a Config and Deps, then New(cfg, deps) and Run(ctx); Ready tells
// when the initial warming pool is registered.
package hostagent
