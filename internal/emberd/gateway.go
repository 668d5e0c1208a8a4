package emberd

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/ember-run/ember/engine/gateway"
	"github.com/ember-run/ember/engine/scheduler"
)

// gatewayServer builds the HTTP server of tenants' routes and binds its
// listener (nothing when Config.GatewayListen is empty).
func (d *Daemon) gatewayServer() error {
	if d.cfg.GatewayListen == "" {
		return nil
	}
	gw, err := gateway.New(d.registry, d.tenants, d.usage, gateway.Config{
		Log:         d.log.With().Str("component", "gateway").Logger(),
		Metrics:     d.metrics,
		Unavailable: []error{scheduler.ErrUnavailable, scheduler.ErrResourceExhausted, scheduler.ErrNoCapacity},
	})
	if err != nil {
		return err
	}
	d.gw = &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      16 * time.Minute, // a route runs up to its function's timeout (900 s max)
		MaxHeaderBytes:    64 << 10,
	}
	if d.gwLis, err = net.Listen("tcp", d.cfg.GatewayListen); err != nil {
		return fmt.Errorf("gateway listen %s: %w", d.cfg.GatewayListen, err)
	}
	return nil
}

// GatewayAddr is the address of tenants' routes ("" when off).
func (d *Daemon) GatewayAddr() string {
	if d.gwLis == nil {
		return ""
	}
	return d.gwLis.Addr().String()
}
