package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/spf13/cobra"
)

func table(w io.Writer, header string, rows func(tw io.Writer)) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	rows(tw)
	return tw.Flush()
}

func (a *app) deployCmd() *cobra.Command {
	var zipPath, handler, network, subpool, logService string
	var noPreload bool
	var memory int64
	var timeout time.Duration
	var env, state []string
	cmd := &cobra.Command{
		Use:   "deploy NAME --zip FILE",
		Short: "Create or update a function ($LATEST) from a zip with an executable bootstrap",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := wire.FunctionConfig{Handler: handler, Network: network, SubPool: subpool, LogService: logService, SkipPreload: noPreload}
			if cmd.Flags().Changed("memory") {
				cfg.MemoryMB = memory
			}
			if cmd.Flags().Changed("timeout") {
				if timeout < time.Millisecond {
					return fmt.Errorf("--timeout %v is too small", timeout)
				}
				cfg.TimeoutMs = timeout.Milliseconds()
			}
			if cmd.Flags().Changed("env") {
				cfg.Env = map[string]string{}
				for _, kv := range env {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return fmt.Errorf("--env %q: want KEY=VALUE", kv)
					}
					cfg.Env[k] = v
				}
			}
			if cmd.Flags().Changed("state") {
				ms, err := parseState(state)
				if err != nil {
					return err
				}
				cfg.State = &ms
			}
			var code io.Reader
			if zipPath != "" {
				f, err := os.Open(zipPath)
				if err != nil {
					return err
				}
				defer f.Close()
				code = f
			}
			fn, err := a.c.DeployFunction(cmd.Context(), args[0], cfg, code)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deployed %s ($LATEST) %s, %d MB, timeout %v%s\n", fn.Name, fn.CodeDigest,
				fn.MemoryMB, time.Duration(fn.TimeoutMs)*time.Millisecond, preloaded(fn.Preloaded))
			return nil
		},
	}
	cmd.Flags().StringVar(&zipPath, "zip", "", "function package (zip with ./bootstrap); optional on update")
	cmd.Flags().Int64Var(&memory, "memory", 128, "memory in MB: 128..1024 in the fixed classes, up to 10240 in a sub-pool")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "timeout (1s..900s)")
	cmd.Flags().StringArrayVar(&env, "env", nil, "environment variable KEY=VALUE (repeatable; replaces all)")
	cmd.Flags().StringVar(&handler, "handler", "", "handler passed as _HANDLER (default bootstrap)")
	cmd.Flags().StringVar(&network, "network", "", "egress (default: the outside world through NAT) or none (no network)")
	cmd.Flags().StringArrayVar(&state, "state", nil, "a resource of your tenant at a path under /mnt, NAME:/mnt/DIR[:SIZE_MB] (repeatable; replaces all; \"\" clears; default size 64 MB)")
	cmd.Flags().StringVar(&logService, "log-service", "", "your logging service the function's output goes to (\"none\": none; \"-\": your default)")
	cmd.Flags().StringVar(&subpool, "subpool", "", "run only in this sub-pool of your tenant (\"-\" clears it; default: your smallest sub-pool that holds the memory, else a fixed class)")
	cmd.Flags().BoolVar(&noPreload, "no-preload", false, "do not load the new code on the warm instances that ran the old one before answering")
	return cmd
}

func (a *app) publishCmd() *cobra.Command {
	return &cobra.Command{
		Use: "publish NAME", Short: "Publish $LATEST as an immutable version", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := a.c.PublishVersion(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s version %s (%s)%s\n", v.Function, v.Version, v.CodeDigest, preloaded(v.Preloaded))
			return nil
		},
	}
}

func (a *app) functionsCmd() *cobra.Command {
	return &cobra.Command{
		Use: "functions", Short: "List functions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fs, err := a.c.ListFunctions(cmd.Context())
			if err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), "NAME\tMEMORY\tTIMEOUT\tVERSIONS\tDIGEST\tUPDATED", func(tw io.Writer) {
				for _, f := range fs {
					fmt.Fprintf(tw, "%s\t%d\t%v\t%s\t%s\t%s\n", f.Name, f.MemoryMB, time.Duration(f.TimeoutMs)*time.Millisecond,
						orDash(strings.Join(f.Versions, ",")), shortDigest(f.CodeDigest), f.Updated.Local().Format(time.DateTime))
				}
			})
		},
	}
}

func (a *app) describeCmd() *cobra.Command {
	return &cobra.Command{
		Use: "describe NAME", Short: "Show a function", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := a.c.GetFunction(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Name:        %s\nTenant:      %s\nRuntime:     %s\nHandler:     %s\nMemory:      %d MB\nTimeout:     %v\nNetwork:     %s\n",
				f.Name, f.Tenant, f.Runtime, f.Handler, f.MemoryMB, time.Duration(f.TimeoutMs)*time.Millisecond, f.Network)
			fmt.Fprintf(w, "Code:        %s (%d bytes)\nConfig hash: %s\nVersions:    %s\nCreated:     %s\nUpdated:     %s\n",
				f.CodeDigest, f.CodeSize, f.ConfigHash, orDash(strings.Join(f.Versions, ", ")),
				f.Created.Local().Format(time.RFC3339), f.Updated.Local().Format(time.RFC3339))
			keys := make([]string, 0, len(f.Env))
			for k := range f.Env {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			if len(keys) > 0 {
				fmt.Fprintln(w, "Env:")
				for _, k := range keys {
					fmt.Fprintf(w, "  %s=%s\n", k, f.Env[k])
				}
			}
			return nil
		},
	}
}

func (a *app) deleteCmd() *cobra.Command {
	return &cobra.Command{
		Use: "delete NAME", Short: "Delete a function and its versions", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.c.DeleteFunction(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
			return nil
		},
	}
}

func (a *app) produceCmd() *cobra.Command {
	var key string
	var rate int
	cmd := &cobra.Command{
		Use: "produce TOPIC [VALUE...]", Short: "Produce records (values from args, else one per stdin line)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var recs []wire.Record
			for _, v := range args[1:] {
				recs = append(recs, wire.Record{Key: key, Value: v})
			}
			if len(args) == 1 {
				sc := bufio.NewScanner(cmd.InOrStdin())
				sc.Buffer(make([]byte, 64<<10), 6<<20)
				for sc.Scan() {
					recs = append(recs, wire.Record{Key: key, Value: sc.Text()})
				}
				if err := sc.Err(); err != nil {
					return fmt.Errorf("reading stdin: %w", err)
				}
			}
			if len(recs) == 0 {
				return fmt.Errorf("no records to produce")
			}
			if rate < 0 {
				return fmt.Errorf("--rate %d must not be negative", rate)
			}
			start := time.Now()
			n, err := a.produce(cmd.Context(), args[0], recs, rate)
			if err != nil {
				return err
			}
			el := time.Since(start)
			fmt.Fprintf(cmd.OutOrStdout(), "produced %d record(s) to %s in %v (%.0f/s)\n", n, args[0],
				el.Round(time.Millisecond), float64(n)/el.Seconds())
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "record key")
	cmd.Flags().IntVar(&rate, "rate", 0, "records per second (0: all at once)")
	return cmd
}

// produce sends recs, all at once or paced at rate records per second in
// slices every 10 ms (each slice one acknowledged API call).
func (a *app) produce(ctx context.Context, topic string, recs []wire.Record, rate int) (int, error) {
	if rate == 0 {
		return a.c.Produce(ctx, topic, recs)
	}
	const tick = 10 * time.Millisecond
	per := max(1, rate/int(time.Second/tick))
	every := time.Duration(per) * time.Second / time.Duration(rate)
	t := time.NewTicker(every)
	defer t.Stop()
	total := 0
	for len(recs) > 0 {
		k := min(per, len(recs))
		n, err := a.c.Produce(ctx, topic, recs[:k])
		total += n
		if err != nil {
			return total, err
		}
		recs = recs[k:]
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-t.C:
		}
	}
	return total, nil
}

func (a *app) invokeCmd() *cobra.Command {
	var qualifier, payload, neededBy, logService string
	var async bool
	cmd := &cobra.Command{
		Use: "invoke NAME [--payload JSON] [--async [--needed-by T]]", Short: "Invoke a function (payload from --payload or stdin); --async queues it and prints its id", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := []byte(payload)
			if !cmd.Flags().Changed("payload") {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return fmt.Errorf("reading stdin: %w", err)
				}
				body = b
			}
			var by time.Time
			if neededBy != "" {
				var err error
				if by, err = parseNeededBy(neededBy, time.Now()); err != nil {
					return err
				}
				async = true
			}
			if async {
				id, err := a.c.InvokeDeferred(cmd.Context(), args[0], qualifier, by, body)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\n", id)
				fmt.Fprintf(cmd.ErrOrStderr(), "queued: ember invocation get %s\n", id)
				return nil
			}
			res, err := a.c.InvokeLogged(cmd.Context(), args[0], qualifier, logService, body)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			_, _ = out.Write(res.Payload)
			if len(res.Payload) > 0 && res.Payload[len(res.Payload)-1] != '\n' {
				fmt.Fprintln(out)
			}
			errw := cmd.ErrOrStderr()
			fmt.Fprintf(errw, "status=%s version=%s start=%s duration=%v\n", res.Status, res.Version, res.Start, res.Duration)
			if !res.OK() {
				if len(res.LogTail) > 0 {
					fmt.Fprintf(errw, "--- log tail ---\n%s\n", strings.TrimRight(string(res.LogTail), "\n"))
				}
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&qualifier, "qualifier", "", "a version or an alias (default $LATEST)")
	cmd.Flags().StringVar(&logService, "log-service", "", "your logging service this invocation's output goes to, over the function's (\"none\": none)")
	cmd.Flags().StringVar(&payload, "payload", "", "event JSON (default: read stdin)")
	cmd.Flags().BoolVar(&async, "async", false, "queue it (an Event invocation): answer with its id at once, run it with the function's retry policy")
	cmd.Flags().StringVar(&neededBy, "needed-by", "", "defer it (implies --async): run it when the pool is idle, and early enough to end by this time (RFC 3339, or a duration from now: 10m)")
	return cmd
}

// parseNeededBy reads an RFC 3339 time or a duration from now.
func parseNeededBy(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--needed-by %q: want an RFC 3339 time or a duration such as 10m", s)
	}
	return t, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// preloaded says on how many instances a deploy or publish loaded the new
// code ahead of its first invocation.
func preloaded(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(", pre-loaded on %d warm instance(s)", n)
}

func qualSuffix(q string) string {
	if q == "" {
		return ""
	}
	return ":" + q
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// parseState reads --state values NAME:/mnt/DIR[:SIZE_MB]; "" alone clears.
func parseState(vals []string) ([]wire.StateMount, error) {
	out := []wire.StateMount{}
	for _, v := range vals {
		if v == "" {
			continue
		}
		parts := strings.Split(v, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return nil, fmt.Errorf("--state %q: want NAME:/mnt/DIR[:SIZE_MB]", v)
		}
		m := wire.StateMount{Name: parts[0], Path: parts[1]}
		if len(parts) == 3 {
			n, err := strconv.ParseInt(parts[2], 10, 64)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("--state %q: size %q is not a positive number of MB", v, parts[2])
			}
			m.SizeMB = n
		}
		out = append(out, m)
	}
	return out, nil
}
