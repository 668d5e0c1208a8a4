// Command ember is the command-line client of Ember's HTTP API: deploy and
// publish functions, bind them to topics, produce records, invoke, and show
// platform status. It is a thin layer over engine/api/client.
//
// Configuration, first found wins: --api, $EMBER_API, the config file that
// `ember login` writes, http://127.0.0.1:8080; and --api-key,
// $EMBER_API_KEY, the config file. The key says who the CLI acts as (a
// tenant, or the administrator) and is never printed.
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
	api, apiKey string
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
	root := &cobra.Command{
		Use:           "ember",
		Short:         "Ember: event-driven serverless functions on Kafka",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			api := firstOf(a.api, os.Getenv("EMBER_API"), cfg.API, defaultAPI)
			key := firstOf(a.apiKey, os.Getenv("EMBER_API_KEY"), cfg.APIKey)
			c, err := client.New(api, client.WithAPIKey(key))
			if err != nil {
				return err
			}
			a.c, a.api, a.apiKey = c, api, key
			return nil
		},
	}
	root.PersistentFlags().StringVar(&a.api, "api", "", "Ember API base URL (env EMBER_API; default from 'ember login', else "+defaultAPI+")")
	root.PersistentFlags().StringVar(&a.apiKey, "api-key", "", "API key: a tenant's, or the administrator's (env EMBER_API_KEY; default from 'ember login')")
	root.AddCommand(a.loginCmd(), a.tenantCmd(), a.topicCmd(), a.subpoolCmd(), a.loggingCmd(),
		a.deployCmd(), a.publishCmd(), a.functionsCmd(), a.describeCmd(), a.deleteCmd(),
		a.bindCmd(), a.unbindCmd(), a.bindingsCmd(), a.bindingCmd(), a.dlqCmd(), a.produceCmd(), a.invokeCmd(), a.statusCmd(), a.lagCmd(), a.routeCmd(), a.aliasCmd(), a.asyncConfigCmd(), a.invocationCmd())
	return root
}

const defaultAPI = "http://127.0.0.1:8080"

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
