package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/engine/api/wire"
)

// aliasCmd manages a function's aliases: names for versions that invokes,
// bindings and routes use as their qualifier, with weighted splits.
func (a *app) aliasCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alias", Short: "Aliases: a name for a version of a function, optionally split by weight with extra versions"}
	var function, version, description string
	var extra []string
	var noExtra bool
	flags := func(c *cobra.Command, update bool) {
		f := c.Flags()
		f.StringVar(&function, "function", "", "the function (required)")
		f.StringVar(&version, "version", "", "the version it names: a published version or $LATEST (default $LATEST)")
		f.StringArrayVar(&extra, "extra", nil, "VERSION=WEIGHT: send that share (0..1) of invocations to another published version (repeatable)")
		f.StringVar(&description, "description", "", "what the alias is for")
		if update {
			f.BoolVar(&noExtra, "no-extra", false, "remove the extra versions: every invocation runs --version")
		}
		_ = c.MarkFlagRequired("function")
	}
	show := func(c *cobra.Command, verb string, al wire.Alias) {
		fmt.Fprintf(c.OutOrStdout(), "%s alias %s of %s -> %s\n", verb, al.Name, al.Function, aliasTargets(al))
	}
	create := &cobra.Command{
		Use: "create NAME --function F [--version V] [--extra V=W]", Short: "Create an alias", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ex, err := parseExtra(extra)
			if err != nil {
				return err
			}
			out, err := a.c.CreateAlias(c.Context(), wire.Alias{Name: args[0], Function: function, Version: version, Extra: ex, Description: description})
			if err != nil {
				return err
			}
			show(c, "created", out)
			return nil
		},
	}
	flags(create, false)
	update := &cobra.Command{
		Use:   "update NAME --function F [--version V] [--extra V=W | --no-extra]",
		Short: "Change an alias: the flags given replace what it had, the others stay",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			cur, err := a.c.Alias(c.Context(), function, args[0])
			if err != nil {
				return err
			}
			f := c.Flags()
			if f.Changed("version") {
				cur.Version = version
			}
			if f.Changed("description") {
				cur.Description = description
			}
			switch {
			case noExtra && f.Changed("extra"):
				return fmt.Errorf("--extra and --no-extra together")
			case noExtra:
				cur.Extra = nil
			case f.Changed("extra"):
				if cur.Extra, err = parseExtra(extra); err != nil {
					return err
				}
			}
			out, err := a.c.UpdateAlias(c.Context(), cur)
			if err != nil {
				return err
			}
			show(c, "updated", out)
			return nil
		},
	}
	flags(update, true)
	del := &cobra.Command{
		Use: "delete NAME --function F", Short: "Delete an alias (refused while a binding or route uses it)", Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if err := a.c.DeleteAlias(c.Context(), function, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.OutOrStdout(), "deleted alias %s of %s\n", args[0], function)
			return nil
		},
	}
	del.Flags().StringVar(&function, "function", "", "the function (required)")
	_ = del.MarkFlagRequired("function")
	list := &cobra.Command{
		Use: "list --function F", Short: "List a function's aliases", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			as, err := a.c.Aliases(c.Context(), function)
			if err != nil {
				return err
			}
			return table(c.OutOrStdout(), "NAME\tVERSIONS\tDESCRIPTION", func(tw io.Writer) {
				for _, al := range as {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", al.Name, aliasTargets(al), al.Description)
				}
			})
		},
	}
	list.Flags().StringVar(&function, "function", "", "the function (required)")
	_ = list.MarkFlagRequired("function")
	cmd.AddCommand(create, update, del, list)
	return cmd
}

// parseExtra reads --extra VERSION=WEIGHT flags.
func parseExtra(flags []string) (map[string]float64, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	out := map[string]float64{}
	for _, e := range flags {
		v, w, ok := strings.Cut(e, "=")
		weight, err := strconv.ParseFloat(w, 64)
		if !ok || v == "" || err != nil {
			return nil, fmt.Errorf("--extra %q: want VERSION=WEIGHT, e.g. 4=0.1", e)
		}
		if _, dup := out[v]; dup {
			return nil, fmt.Errorf("--extra: version %s given twice", v)
		}
		out[v] = weight
	}
	return out, nil
}

// aliasTargets is "3 (90%), 4 (10%)", or "3".
func aliasTargets(al wire.Alias) string {
	main := al.Version
	if main == "" {
		main = "$LATEST"
	}
	if len(al.Extra) == 0 {
		return main
	}
	rest := 1.0
	var parts []string
	vs := make([]string, 0, len(al.Extra))
	for v := range al.Extra {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	for _, v := range vs {
		rest -= al.Extra[v]
		parts = append(parts, fmt.Sprintf("%s (%s)", v, pct(al.Extra[v])))
	}
	return strings.Join(append([]string{fmt.Sprintf("%s (%s)", main, pct(rest))}, parts...), ", ")
}

func pct(w float64) string { return strconv.FormatFloat(math.Round(w*10000)/100, 'f', -1, 64) + "%" }
