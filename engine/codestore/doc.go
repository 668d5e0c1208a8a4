// Package codestore keeps function packages: zip files in the convention of
// Lambda's `provided` runtime, with an executable `bootstrap` at the root.
//
// Put validates a package before it is kept (a real zip, no entry escaping
// the root by path or by symlink, within the compressed and uncompressed
// size limits, a `bootstrap` that is an executable regular file or a symlink
// to one inside the package) and stores it content-addressed at
// <dir>/sha256/<hex>.zip: written to a temporary file, fsynced, renamed, so
// a reader never sees a partial package and putting the same bytes twice is
// a no-op. Every validation failure wraps ErrInvalid. Host agents read
// packages by digest through Open or Path (same host) or through the API's
// GET /v1/code/{digest} (other hosts).
package codestore
