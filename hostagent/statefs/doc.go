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
// One host only: instances on other hosts see other copies. A networked
// store with file semantics is what several hosts need (see the project's
// issues).
package statefs
