// Package pki is the mutual TLS between emberd and host agents: a small
// certificate authority, certificates that carry a role (emberd or agent)
// and a name, and TLS configurations that accept a peer only if its
// certificate chains to the authority and names the expected role (and,
// for an agent, the expected agent id).
//
// emberd dispatches only to agents that prove to be agents of the
// authority, and an agent accepts dispatches, and emberd serves code, only
// to peers that prove the matching role. One-machine set-ups get an
// authority created on emberd's first start (under its state directory);
// operators may bring their own: emberd then needs ca.crt, emberd.crt and
// emberd.key, and each ember-agent ca.crt and its own agent certificate.
//
// Keys are ECDSA P-256; leaf certificates are valid for a year, the
// authority for ten. Files: ca.crt and <name>.crt (0644), ca.key and
// <name>.key (0600).
package pki
