package dispatchpb

// MaxMessageBytes bounds a dispatch request or response on the wire, on
// both sides: a 6 MiB payload plus the request's fields and the response's
// log tail. gRPC's own default of 4 MiB would refuse payloads Ember accepts.
const MaxMessageBytes = 8 << 20
