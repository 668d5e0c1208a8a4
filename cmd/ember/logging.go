package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/engine/api/wire"
)

// loggingCmd manages the tenant's logging services.
func (a *app) loggingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "logging", Short: "Your logging services: where your functions' output and REPORT records go (OTLP/HTTP logs)"}
	var s wire.LogService
	var tokenFile, basicFile string
	create := &cobra.Command{
		Use:   "create NAME --endpoint URL [--bearer-token-file F | --basic-auth-file F] [--default]",
		Short: "Create or replace a logging service; credentials are read from a file (or EMBER_LOG_TOKEN), never from the command line",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s.Name = args[0]
			read := func(path string) (string, error) {
				b, err := os.ReadFile(path)
				return strings.TrimSpace(string(b)), err
			}
			var err error
			switch {
			case tokenFile != "" && basicFile != "":
				return fmt.Errorf("give --bearer-token-file or --basic-auth-file, not both")
			case tokenFile != "":
				s.BearerToken, err = read(tokenFile)
			case basicFile != "":
				s.BasicAuth, err = read(basicFile)
			default:
				s.BearerToken = os.Getenv("EMBER_LOG_TOKEN")
			}
			if err != nil {
				return err
			}
			out, err := a.c.PutLogService(cmd.Context(), s)
			if err != nil {
				return err
			}
			def := ""
			if out.Default {
				def = ", your default"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logging service %s: %s, credentials %s, revision %d%s\n", out.Name, out.Endpoint, out.Credentials, out.Revision, def)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&s.Endpoint, "endpoint", "", "OTLP/HTTP logs URL, http(s)://host[:port][/path] (default path /v1/logs) (required)")
	f.StringVar(&tokenFile, "bearer-token-file", "", "file holding the service's bearer token")
	f.StringVar(&basicFile, "basic-auth-file", "", "file holding user:password for the service")
	f.BoolVar(&s.Default, "default", false, "make it the service of your functions that name none")
	_ = create.MarkFlagRequired("endpoint")
	cmd.AddCommand(create, &cobra.Command{
		Use: "list", Short: "List your logging services (credentials are never shown)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := a.c.ListLogServices(cmd.Context())
			if err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), "NAME\tENDPOINT\tCREDENTIALS\tDEFAULT\tREVISION", func(tw io.Writer) {
				for _, s := range l {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%d\n", s.Name, s.Endpoint, s.Credentials, s.Default, s.Revision)
				}
			})
		},
	}, &cobra.Command{
		Use: "delete NAME", Short: "Delete a logging service no function names", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.c.DeleteLogService(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted logging service %s\n", args[0])
			return nil
		},
	})
	return cmd
}
