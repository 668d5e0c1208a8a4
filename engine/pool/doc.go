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
//	inst:<id>             hash {agent, class, tenant, state (idle|busy), claim, side, log, busyfn, busyvid, busymem}
//	                      (side: the token of a claim beside the main one; busy*: what the main claim runs)
//	busyfn:<tenant>/<fn>  set of busy instances whose main claim runs that function
//	inst:<id>:hot         set of version keys whose container is running there
//	warm:<class>          set of idle instances without a tenant (warming pool)
//	active:<tenant>:<class> set of idle instances assigned to a tenant (active pool), configured for no logging service
//	hot:<version key>     set of those where that version is hot
//	actlog:<tenant>:<class>:<log> idle instances of the tenant configured for logging service <log> (its id)
//	hotlog:<version key>:<log>    set of those where that version is hot (hotlogs:<version key>: their <log>s)
//	actcfg:<tenant>:<class> idle instances of the tenant configured for any logging service
//	busy                  zset instance id -> lease expiry (unix ms)
//	members:<class>       set of the class's instances (bounds a sub-pool's max)
//	starting:<class>      zset of instances being started -> booking expiry (unix ms)
//	subpools              hash name -> SubPool JSON (the variable sub-pools)
//	agent:<id>:state      JSON of the agent's state resources (size, use, attachments); expires with it
//
// Classes are the fixed ones (m128, m256, m512, m1024, shared by every
// tenant) and one per variable sub-pool (sp-<name>, reserved for its
// tenant).
//
// Pub/sub: channel Freed carries "<class>" when a warming-pool instance
// becomes claimable (any tenant's waiter may take it) and "<class>
// <tenant>" when an instance of a tenant's active pool does; channel Demand
// carries "<class>" (any agent) or "<class> <agent>" (the agent the
// placement chose) when a scheduler found no instance; channel
// subpools:changed carries a sub-pool's name when it changes.
package pool
