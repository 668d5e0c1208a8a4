// Package registry keeps Ember's control-plane records in Redis: functions
// (their $LATEST configuration and code digest), immutable published
// versions, bindings of Kafka topics to functions, and the topics each
// tenant owns or was granted. Tenants and their keys are package tenants'.
//
// Resolve, on the invocation hot path, is one HGET, fronted by a small
// in-process cache. Every write publishes a message on one pub/sub channel
// in the same MULTI as the write; Run listens to it and drops the cached
// entries of the changed function, so all emberd replicas converge within a
// pub/sub delivery. The cache is used only while Run's subscription is live
// (a dropped connection flushes it), a generation counter keeps a lookup
// that raced an invalidation from caching what it read, and entries expire
// after a TTL as a backstop. Writes made through a Registry are visible to
// its own Resolve as soon as they return.
//
// Key layout (prefix default "{ember}:reg:", one hash tag so the optimistic
// transactions also work on Redis Cluster):
//
//	fns:<tenant>            set of function names
//	fn:<tenant>:<name>      hash: "fn" -> Function JSON ($LATEST),
//	                        "v:<n>" -> Version JSON (published, immutable)
//	code:<digest>           set of the tenants that deployed a package
//	bindings                hash: "<tenant>/<id>" -> Binding JSON
//	topics                  hash: topic name -> Topic JSON (owner, grants)
//	changes                 pub/sub channel: "fn <tenant> <name>",
//	                        "binding <tenant>/<id>", "topic <name>"
//
// Topics: a tenant owns the topics created through Ember in its namespace
// ("<tenant>.<name>") and may use topics the administrator granted it; a
// binding may read, and a tenant produce to, no other topic, and consumer
// group ids are Ember's ("ember.<tenant>.<binding>").
//
// Errors wrap the sentinels in errors.go; only the API turns them into HTTP
// statuses.
package registry
