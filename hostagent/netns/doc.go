// Package netns makes the network namespaces function containers run in.
// Each belongs to its instance's user namespace, so that ember-init, root
// there and nowhere else, can move a container into it.
//
// ember-init makes them itself (New). The host agent makes the first
// container's of a booting instance before ember-init runs (ForUserNamespace):
// joining a user namespace takes a single-threaded process, so a helper of
// util-linux's (nsenter, unshare) does it, and the agent connects the
// namespace to the network while the instance starts.
package netns
