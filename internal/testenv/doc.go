// Package testenv starts the real services Ember's tests run against: a
// private redis-server per test on a free loopback port, and a private
// containerd (shared by a test binary) with its own root, state and socket.
// Nothing here is a fake: tests that need Redis or containerd get the real
// daemon from Debian's packages, installed by deploy/setup.sh.
package testenv
