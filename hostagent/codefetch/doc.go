// Package codefetch delivers function code to a host agent. A function's
// package is a zip archive addressed by its sha256 digest ("sha256:<hex>").
// A Source fetches the archive: Dir reads the engine's content-addressed
// store on the same machine (<dir>/sha256/<hex>.zip), HTTP fetches it from
// emberd (GET <base>/v1/code/sha256:<hex>). Both verify the digest; Fetch
// into a file (FetchFile) verifies it again and only ever leaves a complete,
// verified file behind.
//
// Extract unpacks an archive into a directory safely: it never trusts the
// archive, although the engine validated it at upload. Entries with absolute
// paths or ".." components, symbolic links that point outside the tree, and
// archives over a total size or entry count are refused; executable bits are
// preserved and everything is made world-readable (the function runs as an
// unprivileged uid inside its instance's user namespace).
//
// Trees keeps each package extracted once per host, within a disk budget
// (least recently linked trees removed past it), and gives instances
// copies made of hard links into that one tree.
package codefetch
