// Package shim is a function container's first process: PID 1 of the
// container's pid namespace, started by ember-init (hostagent/initd) inside
// the container's namespaces and cgroups with a Spec on its fd 3. It mounts
// the container's view of the file system, drops what the function must
// not have, runs the bootstrap as the container's uid under the seccomp
// filter, reaps orphans and reports how the bootstrap ended (Status) on fd
// 4.
//
// It is its own small binary, cmd/ember-shim, which the instance image
// carries beside ember-init: a container's start waits for the shim's Go
// runtime to start, and ember-init's (its packages' initialisation: the
// Runtime API server, logging, protobuf) took about 3 ms more of it here.
// ember-init can still be the shim itself (Arg), for images without it.
package shim
