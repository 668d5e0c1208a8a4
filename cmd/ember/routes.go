package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/engine/api/wire"
)

// routeCmd manages the tenant's HTTP routes on the gateway.
func (a *app) routeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "route", Short: "HTTP routes: METHOD /path/{param} on the gateway, mapped to a function"}
	var rt wire.Route
	var origins, headers []string
	var timeout time.Duration
	var mapping string
	create := &cobra.Command{
		Use:   "create --method M --path /p/{id} --function F",
		Short: "Create or replace the route of a method and path (API Gateway's payload format 2.0 by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rt.TimeoutMs = timeout.Milliseconds()
			if len(origins) > 0 {
				rt.CORS = &wire.CORS{AllowOrigins: origins, AllowHeaders: headers}
			}
			if mapping != "" {
				b, err := os.ReadFile(mapping)
				if err != nil {
					return err
				}
				rt.Mapping = &wire.Mapping{}
				dec := json.NewDecoder(strings.NewReader(string(b)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(rt.Mapping); err != nil {
					return fmt.Errorf("mapping %s: %w", mapping, err)
				}
			}
			out, err := a.c.PutRoute(cmd.Context(), rt)
			if err != nil {
				return err
			}
			access := "tenant key"
			if out.Public {
				access = "public"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "route %s %s -> %s (%s): %s\n", out.Method, out.Path, out.Function+qualSuffix(out.Qualifier), access, out.URL)
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&rt.Method, "method", "", "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY (required)")
	f.StringVar(&rt.Path, "path", "", "path template: /orders/{id}; a last {rest+} takes the rest of the path (required)")
	f.StringVar(&rt.Function, "function", "", "the function it runs (required)")
	f.StringVar(&rt.Qualifier, "qualifier", "", "a published version or an alias (default $LATEST)")
	f.BoolVar(&rt.Public, "public", false, "take requests without the tenant's API key")
	f.StringArrayVar(&origins, "cors-origin", nil, "allow this origin (repeatable; * for any): answers preflights, adds CORS headers")
	f.StringArrayVar(&headers, "cors-header", nil, "with --cors-origin: a request header browsers may send (repeatable)")
	f.Int64Var(&rt.MaxBodyBytes, "max-body", 0, "largest request body in bytes, 413 beyond (default 6 MiB, at most 10 MiB)")
	f.DurationVar(&timeout, "timeout", 0, "answer 504 after this long (default: the function's timeout)")
	f.StringVar(&mapping, "mapping", "", "JSON file of a custom mapping: {\"request\": template, \"response\": {...}} (docs/configuration.md)")
	for _, req := range []string{"method", "path", "function"} {
		_ = create.MarkFlagRequired(req)
	}
	var method, path string
	del := &cobra.Command{
		Use: "delete --method M --path /p/{id}", Short: "Delete a route", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.c.DeleteRoute(cmd.Context(), method, path); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted route %s %s\n", strings.ToUpper(method), path)
			return nil
		},
	}
	del.Flags().StringVar(&method, "method", "", "the route's method (required)")
	del.Flags().StringVar(&path, "path", "", "the route's path template (required)")
	_ = del.MarkFlagRequired("method")
	_ = del.MarkFlagRequired("path")
	cmd.AddCommand(create, del, &cobra.Command{
		Use: "list", Short: "List the tenant's routes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rts, err := a.c.Routes(cmd.Context())
			if err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), "METHOD\tPATH\tFUNCTION\tACCESS\tURL", func(tw io.Writer) {
				for _, r := range rts {
					access := "key"
					if r.Public {
						access = "public"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Method, r.Path, r.Function+qualSuffix(r.Qualifier), access, r.URL)
				}
			})
		},
	})
	return cmd
}
