// Package tenants keeps Ember's accounts and their API keys in Redis and
// turns a presented key into a Principal: a tenant, or the administrator.
//
// A tenant key is 256 random bits, shown once when it is issued and stored
// only as its SHA-256 (a fast hash is enough for a key with that much
// entropy; no password stretching is needed). Rotating issues a new key and
// revokes every older one at once; revoking removes every key, locking the
// tenant out until it is rotated again. The administrator key is not stored
// in Redis: emberd loads it from a 0600 file under its state directory
// (created on first start) or from EMBER_ADMIN_KEY, and it is compared in
// constant time.
//
// Key layout (prefix default "{ember}:ten:", one hash tag so the
// transactions work on Redis Cluster):
//
//	tenants         hash: name -> Tenant JSON
//	key:<sha256>    string: the tenant a key belongs to
//	keys:<name>     set of the tenant's key hashes
//	changes         pub/sub channel: a tenant whose keys changed
//
// Authenticating a key costs one Redis GET, or nothing when the key is in
// the in-process cache: it is used only while Run's subscription to key
// changes is live (rotate and revoke publish on "changes", and flush the
// local cache at once), and entries expire after DefaultCacheTTL anyway.
//
// The tenant of a request is always the key's tenant: nothing below the API
// edge reads a header or trusts a tenant named by a peer.
package tenants
