package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/engine/api/wire"
)

func (a *app) bindCmd() *cobra.Command {
	var b wire.Binding
	var window, age time.Duration
	var disabled bool
	var retries int
	var filters []string
	var from string
	cmd := &cobra.Command{
		Use: "bind ID --topic T --function F", Short: "Create or replace a binding of a topic to a function", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b.ID = args[0]
			b.BatchWindowMs = window.Milliseconds()
			b.MaxRecordAgeS = int64(age / time.Second)
			if cmd.Flags().Changed("max-retry-attempts") {
				b.MaxRetryAttempts = &retries
			}
			for _, f := range filters {
				if !json.Valid([]byte(f)) {
					return fmt.Errorf("--filter %s: not JSON", f)
				}
				b.Filters = append(b.Filters, json.RawMessage(f))
			}
			if t, err := time.Parse(time.RFC3339, from); err == nil {
				b.StartingPosition, b.StartingTimestamp = "at_timestamp", t
			} else {
				b.StartingPosition = from
			}
			en := !disabled
			b.Enabled = &en
			out, err := a.c.PutBinding(cmd.Context(), b)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "bound %s: %s -> %s%s (group %s, batch %d, ordering %s, dlq %s)\n", out.ID, out.Topic, out.Function,
				qualSuffix(out.Qualifier), out.GroupID, out.BatchSize, out.Ordering, out.DLQTopic)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&b.Topic, "topic", "", "topic to read (required)")
	f.StringVar(&b.Function, "function", "", "function to invoke (required)")
	f.StringVar(&b.Qualifier, "qualifier", "", "the version or alias to invoke (default $LATEST)")
	f.IntVar(&b.BatchSize, "batch-size", 0, "max records per invocation (default 100)")
	f.DurationVar(&window, "window", 0, "batching window (default 0, max 300s)")
	f.IntVar(&b.MaxBatchBytes, "max-batch-bytes", 0, "max bytes of an invocation's event (default and max 6 MiB)")
	f.StringVar(&from, "from", "", "starting position: latest (default), trim_horizon (or earliest), or an RFC 3339 time")
	f.StringVar(&b.Ordering, "ordering", "", "partition (default: one batch in flight per partition), key (per key, in parallel) or none")
	f.IntVar(&b.MaxConcurrency, "max-concurrency", 0, "batches in flight per partition with --ordering key|none (default 10, max 100)")
	f.IntVar(&retries, "max-retry-attempts", 2, "retries of a failing batch before dead-lettering (-1: until --max-record-age)")
	f.DurationVar(&age, "max-record-age", 0, "dead-letter records older than this (60s..168h; default: no limit)")
	f.BoolVar(&b.BisectOnError, "bisect-on-error", false, "split a failing batch in two and retry each half")
	f.BoolVar(&b.ReportBatchItemFailures, "report-batch-item-failures", false, "let the function answer batchItemFailures: only those records (and those after them in their order group) are retried")
	f.StringArrayVar(&filters, "filter", nil, `event-filtering pattern over value, key and headers, e.g. '{"value":{"kind":["order"]}}' (repeatable, max 5)`)
	f.StringVar(&b.IsolationLevel, "isolation", "", "read_uncommitted (default) or read_committed")
	f.StringVar(&b.ResultTopic, "result-topic", "", "topic for successful responses")
	f.StringVar(&b.DLQTopic, "dlq-topic", "", "dead-letter topic (default TOPIC.dlq in your namespace)")
	f.BoolVar(&disabled, "disabled", false, "create the binding disabled")
	_ = cmd.MarkFlagRequired("topic")
	_ = cmd.MarkFlagRequired("function")
	return cmd
}

func (a *app) unbindCmd() *cobra.Command {
	return &cobra.Command{
		Use: "unbind ID", Short: "Delete a binding", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.c.DeleteBinding(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unbound %s\n", args[0])
			return nil
		},
	}
}

func (a *app) bindingsCmd() *cobra.Command {
	return &cobra.Command{
		Use: "bindings", Short: "List bindings", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bs, err := a.c.ListBindings(cmd.Context())
			if err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), "ID\tTOPIC\tFUNCTION\tBATCH\tWINDOW\tFROM\tORDERING\tRETRIES\tDLQ\tRESULT\tENABLED", func(tw io.Writer) {
				for _, b := range bs {
					retries := "-"
					if b.MaxRetryAttempts != nil {
						retries = strconv.Itoa(*b.MaxRetryAttempts)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s%s\t%d\t%v\t%s\t%s\t%s\t%s\t%s\t%v\n", b.ID, b.Topic, b.Function, qualSuffix(b.Qualifier),
						b.BatchSize, time.Duration(b.BatchWindowMs)*time.Millisecond, b.StartingPosition, b.Ordering, retries,
						b.DLQTopic, orDash(b.ResultTopic), b.Enabled != nil && *b.Enabled)
				}
			})
		},
	}
}

// bindingCmd groups operations on one live binding.
func (a *app) bindingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "binding", Short: "Operate on a live binding"}
	var to, offsets string
	rewind := &cobra.Command{
		Use:   "rewind ID (--to TIME | --offsets P:O,...)",
		Short: "Move a binding's consumer group to a time or to offsets (each partition's owner applies it once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rw wire.Rewind
			if to != "" {
				t, err := time.Parse(time.RFC3339, to)
				if err != nil {
					return fmt.Errorf("--to: want an RFC 3339 time: %w", err)
				}
				rw.To = t
			}
			if offsets != "" {
				rw.Offsets = map[int]int64{}
				for _, po := range strings.Split(offsets, ",") {
					p, o, ok := strings.Cut(strings.TrimSpace(po), ":")
					pi, err1 := strconv.Atoi(p)
					oi, err2 := strconv.ParseInt(o, 10, 64)
					if !ok || err1 != nil || err2 != nil {
						return fmt.Errorf("--offsets %q: want PARTITION:OFFSET,...", po)
					}
					rw.Offsets[pi] = oi
				}
			}
			out, err := a.c.RewindBinding(cmd.Context(), args[0], rw)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rewind %d of %s asked for: its consumers apply it at their next rebalance\n", out.Rewind.ID, out.ID)
			return nil
		},
	}
	rewind.Flags().StringVar(&to, "to", "", "RFC 3339 time: each partition moves to its first record at or after it")
	rewind.Flags().StringVar(&offsets, "offsets", "", "explicit next offsets, PARTITION:OFFSET,... (partitions not named keep their place)")
	rewind.MarkFlagsMutuallyExclusive("to", "offsets")
	rewind.MarkFlagsOneRequired("to", "offsets")
	cmd.AddCommand(rewind)
	return cmd
}

// dlqCmd works on dead-lettered records.
func (a *app) dlqCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "Dead-lettered records"}
	var from, to string
	redrive := &cobra.Command{
		Use:   "redrive BINDING [--from TIME] [--to TIME]",
		Short: "Invoke the binding's function again with its dead-lettered records (at least once each)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var rd wire.Redrive
			for _, x := range []struct {
				flag, v string
				t       *time.Time
			}{{"--from", from, &rd.From}, {"--to", to, &rd.To}} {
				if x.v == "" {
					continue
				}
				t, err := time.Parse(time.RFC3339, x.v)
				if err != nil {
					return fmt.Errorf("%s: want an RFC 3339 time: %w", x.flag, err)
				}
				*x.t = t
			}
			res, err := a.c.RedriveBinding(cmd.Context(), args[0], rd)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "redrive of %s: %d dead-letter records read, %d handled, %d failed again (dead-lettered anew)\n",
				args[0], res.Scanned, res.Redriven, res.DeadLettered)
			return nil
		},
	}
	redrive.Flags().StringVar(&from, "from", "", "RFC 3339 time: records dead-lettered at or after it (default: all)")
	redrive.Flags().StringVar(&to, "to", "", "RFC 3339 time: records dead-lettered before it (default: now)")
	var limit int
	list := &cobra.Command{
		Use:   "list BINDING [--limit N]",
		Short: "Show the binding's latest dead-lettered records with their reasons, newest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dls, err := a.c.DeadLetters(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			return table(cmd.OutOrStdout(), "DEAD-LETTERED AT\tSOURCE\tATTEMPTS\tREASON\tVALUE", func(tw io.Writer) {
				for _, dl := range dls {
					v := strconv.Quote(string(dl.Value))
					if len(v) > 40 {
						v = v[:37] + "..."
					}
					fmt.Fprintf(tw, "%s\t%s/%d@%d\t%d\t%s\t%s\n", dl.At.Format(time.RFC3339Nano), dl.Topic, dl.SourcePartition,
						dl.SourceOffset, dl.Attempts, dl.Reason, v)
				}
			})
		},
	}
	list.Flags().IntVar(&limit, "limit", 20, "how many records (at most 1000)")
	cmd.AddCommand(redrive, list)
	return cmd
}
