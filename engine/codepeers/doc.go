// Package codepeers makes every function package reachable from every
// emberd replica. Each replica keeps its packages in its own
// codestore.Store and records in Redis, per package, the peer URLs of the
// replicas that hold it. A replica asked for a package it lacks (by its
// in-process agent, by an agent on another host, or by a tenant) fetches
// it from one of those replicas over mutual TLS (emberd certificates),
// verifies the digest, stores it and announces itself as a holder: a
// package deployed through any replica reaches the others on first use.
//
// Key layout: "{ember}:code:<digest>" is a set of peer URLs; the hash tag
// is the engine's, so Redis Cluster keeps it with the rest.
package codepeers
