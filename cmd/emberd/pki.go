package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/internal/pki"
)

// pkiCmd manages the mutual-TLS authority between emberd and agents.
func pkiCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "pki",
		Short: "Manage the mutual-TLS authority between emberd and host agents",
		Long: "emberd creates an authority in <state-dir>/pki on its first start. For an ember-agent on\n" +
			"another host, issue its certificate here and copy ca.crt, NAME.crt and NAME.key to it.",
	}
	cmd.PersistentFlags().StringVar(&dir, "dir", "/var/lib/ember/pki", "authority directory (ca.crt, ca.key)")
	cmd.AddCommand(&cobra.Command{
		Use: "init", Short: "Create the authority in --dir if it does not exist", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, created, err := pki.LoadOrCreateAuthority(dir)
			if err != nil {
				return err
			}
			if created {
				fmt.Fprintf(cmd.OutOrStdout(), "created authority %s\n", filepath.Join(dir, "ca.crt"))
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "authority %s exists\n", filepath.Join(dir, "ca.crt"))
			}
			return nil
		},
	})
	var out string
	var hosts []string
	issue := &cobra.Command{
		Use:   "issue agent|emberd NAME [--host H ...] [--out DIR]",
		Short: "Issue a certificate: an agent's NAME is its --agent-id",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, name := args[0], args[1]
			if role != pki.RoleAgent && role != pki.RoleEmberd {
				return fmt.Errorf("role %q: want agent or emberd", role)
			}
			ca, _, err := pki.LoadOrCreateAuthority(dir)
			if err != nil {
				return err
			}
			if !ca.CanIssue() {
				return errors.New("the authority's key (ca.key) is not in --dir")
			}
			cert, err := ca.Issue(role, name, hosts...)
			if err != nil {
				return err
			}
			if out == "" {
				out = dir
			}
			if err := pki.WriteFiles(out, name, ca, cert); err != nil {
				return err
			}
			f := pki.InDir(out, name)
			fmt.Fprintf(cmd.OutOrStdout(), "issued %s certificate %s (key %s, authority %s)\n", role, f.Cert, f.Key, f.CA)
			return nil
		},
	}
	issue.Flags().StringArrayVar(&hosts, "host", nil, "extra DNS name or IP address the certificate is valid for (repeatable)")
	issue.Flags().StringVar(&out, "out", "", "directory to write NAME.crt, NAME.key and ca.crt (default --dir)")
	cmd.AddCommand(issue)
	return cmd
}
