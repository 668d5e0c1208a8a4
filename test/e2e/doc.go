// Package e2e holds Ember's end-to-end tests: the real emberd binary (with
// its in-process host agent and embedded Kafka-protocol broker) run as a
// subprocess against a private Redis and containerd, driven through the
// HTTP API and a kafka-go producer exactly as a user would.
//
// Three harnesses build installations:
//
//   - newStack: one emberd with its agent, Redis and broker (most tests);
//   - newReplicaSet: several emberd replicas sharing Redis, a broker and an
//     authority, each with its agent (rebalances, code replication);
//   - newCluster: several hosts on this machine, each a network namespace
//     on a bridge the harness creates, with its own containerd, state
//     directory and ember-agent, and one emberd without an agent; Redis,
//     the broker and emberd's peer listener listen on the bridge (placement
//     across hosts, code delivery over the network).
package e2e
