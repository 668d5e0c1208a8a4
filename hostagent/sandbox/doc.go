// Package sandbox runs Ember instances as containerd containers.
//
// An instance is a container of the instance image (see package image)
// whose PID 1 is ember-init. Runtime.Create gives it a user namespace (its
// root is an unprivileged host uid, 100000 by default), a read-only root
// filesystem, no_new_privs, exactly the capabilities ember-init needs to
// build function containers inside it (CAP_SYS_ADMIN, CAP_SETUID,
// CAP_SETGID, CAP_SETPCAP, and CAP_KILL to stop them, all confined to that
// user namespace), the
// default seccomp profile derived from those capabilities (for the x86-64
// system call table alone: a call of another kills its thread), its own network
// namespace with loopback only, and memory, CPU and pids limits on its
// cgroup "/ember/<id>" (runc's cgroupfs driver). Two host directories are
// bind-mounted: the socket directory (read-write, owned by the mapped root,
// where ember-init creates its socket) and the code directory (read-only).
// The instance's cgroup2 directory is delegated to its mapped root, so
// ember-init can start container processes directly inside the child
// cgroups the agent creates with package cgroup.
//
// Creating an instance costs a containerd container, a shim and a runc
// create (about 100 to 150 ms here); it happens ahead of demand, never per
// invocation. Define makes the containerd container (10-18 ms of that)
// ahead of the boot: Create with the same spec starts from it. Destroy is SIGTERM, a grace period, SIGKILL, then the task,
// the container, its snapshot and any cgroup left behind are deleted.
package sandbox
