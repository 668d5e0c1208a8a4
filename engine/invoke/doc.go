// Package invoke holds the Invocation and Result types: the contract between
// whoever asks for a function to run (consumers/, the API's synchronous
// invoke) and the engine that runs it. It has no behaviour beyond small
// helpers, so that every side can import it without pulling in Redis or gRPC.
package invoke
