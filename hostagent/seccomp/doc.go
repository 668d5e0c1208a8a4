// Package seccomp is the system call filter every function process runs
// under, on top of the instance's own (containerd's default profile, which
// is derived for ember-init's capabilities and so still allows creating
// namespaces and mounting). It is built for unprivileged code: no
// namespace creation, setns, mount or pivot_root, no bpf, perf_event_open,
// io_uring, userfaultfd, keyrings, ptrace or process_vm_* (other processes'
// memory), no kernel modules, kexec, reboot, swap or clock changes. Denied
// calls fail with EPERM (clone3 with ENOSYS, so that C libraries fall back
// to clone, whose namespace flags are checked); any other architecture than
// x86-64 (int 0x80, x32) kills the process, as a filter on x86-64 numbers
// cannot judge them.
//
// The filter is classic BPF assembled with golang.org/x/net/bpf and loaded
// with seccomp(2) and SECCOMP_FILTER_FLAG_TSYNC; no_new_privs must be set.
package seccomp
