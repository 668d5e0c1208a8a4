// Package pool keeps Ember's pool state in Redis: which host agents are alive,
// which instances each agent has, and for every instance its resource class,
// its tenant (empty while it sits in the warming pool), its hot function
// versions and whether it is idle or busy.
//
// Host agents write instances in (AddWarm) and take them out (Retire, when
// reclaimed); the engine's scheduler claims an idle instance with one Lua
// script per claim and releases it after the invocation. Every multi-key
// change is a Lua script, so Redis is the single source of truth even with
// many emberd replicas and agents.
//
// Key layout (all keys share the hash tag of the prefix, default "{ember}:",
// so that the scripts work on Redis Cluster):
//
//	agent:<id>            hash {addr, started}; EXPIREs unless heartbeated
//	agents                set of agent ids ever registered and not removed
//	agent:<id>:insts      set of the agent's instance ids
//	inst:<id>             hash {agent, class, tenant, state (idle|busy)}
//	inst:<id>:hot         set of version keys whose container is running there
//	warm:<class>          set of idle instances without a tenant (warming pool)
//	active:<tenant>:<class> set of idle instances assigned to a tenant (active pool)
//	hot:<version key>     set of idle instances where that version is hot
//	busy                  zset instance id -> lease expiry (unix ms)
//
// Pub/sub: channel Freed carries a class name whenever an instance of that
// class becomes idle or is added; channel Demand carries a class name when a
// scheduler found no instance at all, asking agents to start one.
package pool
