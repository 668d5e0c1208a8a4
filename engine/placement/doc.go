// Package placement decides where an invocation runs, as pure functions
// over plain values (no Redis, no clock), so that every rule has a unit
// test:
//
//   - Choose picks the pool of a function: the sub-pool it names, else the
//     smallest sub-pool of its tenant that holds its memory, else the
//     smallest fixed class that does.
//   - Host picks the agent that starts a new instance: filters (the host
//     could ever hold the instance; it has room for it now), then ranking
//     (the least free memory left after placing it, so that big holes stay
//     open for big instances; ties by id).
package placement
