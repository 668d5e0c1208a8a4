// Package redisconn turns the --redis flag of emberd and ember-agent into
// a client: "host:port" on a trusted network (the loopback default), a
// redis:// or rediss:// URL, or a redis-sentinel:// / rediss-sentinel://
// URL naming sentinels and a master, which the client follows through
// failovers. The TLS forms are verified against the system roots or the
// given CA file, so that registry records (function environments among
// them) never cross a network in clear text.
package redisconn
