// Package cgroup creates the cgroup of one function container inside an
// instance's cgroup, race-free, from the host side.
//
// runc puts an instance (cgroupsPath "/ember/<id>", cgroupfs driver) in
// /sys/fs/cgroup/<controller>/ember/<id> for every cgroup v1 controller and
// in /sys/fs/cgroup/unified/ember/<id> in cgroup2, which in this hybrid
// layout has no controllers but is where eBPF programs attach and where cgroup
// ids come from. Create makes a child directory named for the container under
// the instance's cgroup2 directory and under each v1 controller Ember uses
// (memory, cpu, cpuacct, pids), writes its limits, chowns the directory and
// its membership files (never its limit files) to the instance's mapped root
// uid, and opens the handles ember-init needs to start the container's
// process directly inside it: an O_DIRECTORY fd of the cgroup2 directory for
// clone3(CLONE_INTO_CGROUP) and a write fd of each v1 tasks file. The host
// agent sends those fds with the start request (SCM_RIGHTS), so the process
// never runs a single instruction outside its cgroup.
//
// SetParentShares weighs the instances, together, against the host's other
// processes: the cpu.shares of the cgroup runc puts them all under.
//
// Only the cgroup v1 / hybrid layout is supported (the one on Ember's hosts);
// a cgroup2-only host is refused with an error.
package cgroup
