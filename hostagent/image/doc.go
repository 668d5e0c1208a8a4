// Package image builds the instance image locally and makes sure containerd
// has it, without any registry.
//
// The image is one uncompressed layer holding a minimal root filesystem:
// busybox (Debian's busybox-static) with a symlink per applet, the static
// ember-init binary at /sbin/ember-init, the mount points an instance needs
// (/ember/sock, /ember/code, /var/task, /tmp, /proc, /sys, /dev, /run) and a
// minimal /etc/passwd and /etc/group (root, and sbx_user1051 with uid 1000,
// the uid functions run as). Build writes it as an OCI image layout tar,
// byte for byte deterministic for the same inputs. Its tag is derived from
// the sha256 of those inputs (busybox bytes, ember-init bytes, a format
// version), so Ensure imports and unpacks it only when an input changed.
package image
