// Package examples holds example functions built with
// github.com/aws/aws-lambda-go, one `package main` directory each, run by
// ember-init as a `provided` runtime bootstrap. Build one as a static binary:
//
//	CGO_ENABLED=0 go build -o <code-dir>/bootstrap ./examples/<name>
//
// The functions:
//   - kafka-echo: takes a Kafka (MSK) event and returns {"records": N, "ids": [...],
//     "started": <unix ns>}, the base64-decoded value of every record
//     (partitions in key order), and logs one line per batch.
//   - kafka-picky: like kafka-echo, but a record whose value starts with
//     "fail" fails the batch (or, with PARTIAL=1, only itself, in a partial
//     batch response), and "big:<n>" makes the response n bytes; for error
//     controls.
//   - http-echo: takes API Gateway's HTTP API payload format 2.0 and answers with what
//     it received (method, path, parameters, headers, cookies, exact body); query
//     parameters make it set a status, cookies, a binary body, sleep, fail or answer
//     an invalid response; for the gateway.
//   - fail: always returns errors.New("boom"), i.e. a function_error.
//   - counter: keeps a counter in a state resource of its tenant (incr under flock,
//     read, fill up to the quota); for state shared across instances.
//   - sleep: sleeps {"ms": N} milliseconds, then returns {"slept_ms": N}; for timeouts
//     and waiting ({"stat": true} adds its log stream, naming the instance, and /tmp size).
//   - exit: os.Exit(3) when the payload is {"exit": true}, else echoes it; for restarts.
//   - caller: calls another function ({"function": F, "payload": ...}) through the Invoke
//     API its runtime serves and waits for the result, holding a nonce and "mb"
//     megabytes of a pattern in memory across the wait; for invocations that wait
//     without holding an instance.
//   - whoami: reports its uid, gid, capabilities, no_new_privs, environment and
//     whether LAMBDA_TASK_ROOT and HOME are writable; for isolation tests.
//
// The package itself holds no code; hostagent/initd's tests build these.
package examples
