package invoke

import "time"

// Timing splits one invocation's time, from the scheduler's Invoke to its
// return, into the stages of the per-stage budget (docs/architecture.md,
// "Budget of one warm invocation"); the function's own run is
// Result.Duration. A stage that was not measured is zero. Stages measured
// on the agent's host use its clock only, so they hold across hosts.
type Timing struct {
	// Claim: Invoke called to an instance claimed (resolution, placement,
	// the claim script, any wait for an instance, earlier failed attempts).
	Claim time.Duration
	// Dispatch: the dispatch round trip less the agent's share: the gRPC
	// request and response, both ways.
	Dispatch time.Duration
	// Agent: the agent's own time, from the request's arrival to the Invoke
	// written to ember-init and from ember-init's Result to the reply.
	Agent time.Duration
	// ToHandler: the Invoke written to ember-init to the runtime's GET
	// /next returning it (a container's first invocation includes its
	// start).
	ToHandler time.Duration
	// FromHandler: the function's response posted to the agent reading
	// ember-init's Result.
	FromHandler time.Duration
	// Release: the claim given back to the pool.
	Release time.Duration
}
