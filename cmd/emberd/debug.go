package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
)

// serveDebug serves Go's pprof handlers on addr, which must be a loopback
// address: profiles expose internals and are never served publicly. They
// are served until the process exits, shutdown included: a shutdown that
// hangs can be read there (/debug/pprof/goroutine?debug=1).
func serveDebug(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--debug-addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--debug-addr %q: only loopback addresses are allowed", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--debug-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(l) }() // ends with the process
	return nil
}
