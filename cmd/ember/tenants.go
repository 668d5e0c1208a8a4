package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// loginCmd checks a key against the API and keeps it (with the API URL) in
// the config file.
func (a *app) loginCmd() *cobra.Command {
	var fromStdin bool
	cmd := &cobra.Command{
		Use:   "login [--api URL] [--api-key KEY | --api-key-stdin]",
		Short: "Check an API key and remember it, with the API URL, in the config file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fromStdin {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && err != io.EOF {
					return fmt.Errorf("reading the key from stdin: %w", err)
				}
				a.apiKey = strings.TrimSpace(line)
				if err := a.reconnect(); err != nil {
					return err
				}
			}
			if a.apiKey == "" {
				return fmt.Errorf("no API key: give --api-key, --api-key-stdin or EMBER_API_KEY")
			}
			who, err := a.c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			p, err := saveConfig(config{API: a.api, APIKey: a.apiKey})
			if err != nil {
				return err
			}
			as := "tenant " + who.Tenant
			if who.Admin {
				as = "the administrator"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in to %s as %s (saved in %s)\n", a.api, as, p)
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromStdin, "api-key-stdin", false, "read the key from stdin (keeps it out of the shell history)")
	return cmd
}

func (a *app) tenantCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "tenant", Short: "Manage tenants and their API keys (administrator)"}
	cmd.AddCommand(&cobra.Command{
		Use: "create NAME", Short: "Create a tenant and print its API key (shown once)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := a.c.CreateTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			printKey(cmd.OutOrStdout(), "created tenant "+k.Name, k.APIKey)
			return nil
		},
	}, &cobra.Command{
		Use: "list", Short: "List tenants", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := a.c.ListTenants(cmd.Context())
			if err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), "NAME\tCREATED\tKEY ISSUED\tREVOKED", func(tw io.Writer) {
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", t.Name, t.Created.Local().Format(time.DateTime),
						t.Rotated.Local().Format(time.DateTime), t.Revoked)
				}
			})
		},
	}, &cobra.Command{
		Use: "rotate NAME", Short: "Issue a new API key for a tenant; its older keys stop working at once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, err := a.c.RotateKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			printKey(cmd.OutOrStdout(), "rotated the key of tenant "+k.Name, k.APIKey)
			return nil
		},
	}, &cobra.Command{
		Use: "revoke NAME", Short: "Revoke every API key of a tenant (until it is rotated)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.c.RevokeKeys(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked every key of tenant %s\n", args[0])
			return nil
		},
	})
	return cmd
}

func printKey(w io.Writer, what, key string) {
	fmt.Fprintf(w, "%s\napi key: %s\n(shown once: store it now; use it with `ember login --api-key-stdin` or EMBER_API_KEY)\n", what, key)
}

func (a *app) topicCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topic", Short: "Create, list and delete your topics; grant topics (administrator)"}
	var partitions int
	create := &cobra.Command{
		Use: "create NAME [--partitions N]", Short: "Create a topic in your namespace (<tenant>.NAME)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := a.c.CreateTopic(cmd.Context(), args[0], partitions)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "created topic %s (%d partitions)\n", t.Name, t.Partitions)
			return nil
		},
	}
	create.Flags().IntVar(&partitions, "partitions", 0, "partitions (default 4)")
	var tenant, access string
	grant := &cobra.Command{
		Use: "grant TOPIC --tenant T [--access consume|produce|all]", Short: "Let a tenant use a topic (administrator)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.c.Grant(cmd.Context(), args[0], tenant, access); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "granted %s on %s to %s\n", access, args[0], tenant)
			return nil
		},
	}
	grant.Flags().StringVar(&tenant, "tenant", "", "tenant (required)")
	grant.Flags().StringVar(&access, "access", "consume", "consume, produce or all")
	_ = grant.MarkFlagRequired("tenant")
	var untenant string
	ungrant := &cobra.Command{
		Use: "ungrant TOPIC --tenant T", Short: "Withdraw a tenant's grant on a topic (administrator)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.c.Ungrant(cmd.Context(), args[0], untenant); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "withdrew %s's grant on %s\n", untenant, args[0])
			return nil
		},
	}
	ungrant.Flags().StringVar(&untenant, "tenant", "", "tenant (required)")
	_ = ungrant.MarkFlagRequired("tenant")
	cmd.AddCommand(create, &cobra.Command{
		Use: "list", Short: "List the topics you own or were granted (every topic for the administrator)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := a.c.ListTopics(cmd.Context())
			if err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), "NAME\tOWNER\tPARTITIONS\tGRANTS", func(tw io.Writer) {
				for _, t := range ts {
					var gs []string
					for k, v := range t.Grants {
						gs = append(gs, k+"="+v)
					}
					parts := "-"
					if t.Partitions > 0 {
						parts = fmt.Sprint(t.Partitions)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, orDash(t.Owner), parts, orDash(strings.Join(gs, ",")))
				}
			})
		},
	}, &cobra.Command{
		Use: "delete NAME", Short: "Delete one of your topics (refused while a binding uses it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.c.DeleteTopic(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted topic %s\n", args[0])
			return nil
		},
	}, grant, ungrant)
	return cmd
}
