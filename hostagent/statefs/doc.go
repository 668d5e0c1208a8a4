// Package statefs keeps the tenants' state resources on one host and
// attaches them to instances.
//
// A resource is an ext4 file system in an image file of its quota's size
// (<root>/<tenant>/<name>.img), mounted once per host through a loop device
// at <root>/<tenant>/<name>: the quota holds because the file system is
// that big, and flock, fcntl locks and rename work as on any local disk,
// across every instance of the host. An instance gets a state directory
// that is a mount point of its own with shared propagation; the sandbox
// binds it into the instance as a slave, so a resource bind-mounted into
// that directory on the host later appears inside the running instance,
// where ember-init binds it into the containers that name it. Detaching
// unmounts the binds; the data stays in the image.
//
// With Options.Filer the resources live on a SeaweedFS cluster shared by
// every host instead: each is mounted once per host by a `weed mount`
// process (FUSE) from the filer's /ember/state/<tenant>/<name>, with its
// own collection (what its quota counts) and one writer per file across
// hosts (-dlm); instances get it through the same binds. Creating a
// directory is decided at the filer, so mkdir serves as a lock across
// hosts; flock across mounts is not reliable in SeaweedFS
// 4.53 (docs/configuration.md).
package statefs
