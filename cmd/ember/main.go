// Command ember is the command-line client of Ember's HTTP API: deploy and
// publish functions, bind them to topics, produce records, invoke, and show
// platform status. It is a thin layer over engine/api/client.
//
// Configuration: --api (default $EMBER_API or http://127.0.0.1:8080),
// --tenant (default $EMBER_TENANT, else the server's "default"), and the
// bearer token from $EMBER_TOKEN (never printed).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ember-run/ember/engine/api/client"
	"github.com/spf13/cobra"
)

// exitError carries an exit code without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

type app struct {
	api, tenant string
	c           *client.Client
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	var ee exitError
	switch {
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case err != nil:
		fmt.Fprintln(os.Stderr, "ember:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	a := &app{}
	defAPI := os.Getenv("EMBER_API")
	if defAPI == "" {
		defAPI = "http://127.0.0.1:8080"
	}
	root := &cobra.Command{
		Use:           "ember",
		Short:         "Ember: event-driven serverless functions on Kafka",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client.New(a.api, client.WithTenant(a.tenant), client.WithToken(os.Getenv("EMBER_TOKEN")))
			if err != nil {
				return err
			}
			a.c = c
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.api, "api", defAPI, "Ember API base URL (env EMBER_API)")
	root.PersistentFlags().StringVar(&a.tenant, "tenant", os.Getenv("EMBER_TENANT"), "tenant (env EMBER_TENANT; default: the server's \"default\")")
	root.AddCommand(a.deployCmd(), a.publishCmd(), a.functionsCmd(), a.describeCmd(), a.deleteCmd(),
		a.bindCmd(), a.unbindCmd(), a.bindingsCmd(), a.produceCmd(), a.invokeCmd(), a.statusCmd())
	return root
}
