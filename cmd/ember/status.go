package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/engine/api/wire"
)

func (a *app) statusCmd() *cobra.Command {
	var ready, watch bool
	var waitLag string
	var timeout, every time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show agents, pool occupancy, bindings with lag and activity",
		Long: "Show agents, pool occupancy per class, each binding's lag (records, seconds, status, drain\n" +
			"estimate; `ember lag ID` for partitions) and recent activity. --watch redraws every --every.\n" +
			"--ready exits 0 once the API answers and an agent is registered; --wait-lag ID waits until\n" +
			"the binding's lag is 0 on every partition, printing the lag as it falls.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			w := cmd.OutOrStdout()
			switch {
			case ready:
				st, err := a.c.Status(ctx)
				if err != nil {
					return err
				}
				if len(st.Agents) == 0 {
					return errors.New("no agent registered yet")
				}
				return nil
			case waitLag != "":
				ctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				return a.waitLag(ctx, w, waitLag)
			}
			return a.repeat(ctx, w, watch, every, func(ctx context.Context, w io.Writer) error {
				st, err := a.c.Status(ctx)
				if err != nil {
					return err
				}
				printStatus(w, st)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&watch, "watch", false, "redraw until interrupted")
	cmd.Flags().DurationVar(&every, "every", 2*time.Second, "with --watch: time between redraws")
	cmd.Flags().BoolVar(&ready, "ready", false, "only check that Ember is up (exit status)")
	cmd.Flags().StringVar(&waitLag, "wait-lag", "", "wait until binding ID has no lag")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "with --wait-lag: give up after this long")
	return cmd
}

// waitLag polls the binding's lag until it is 0 everywhere (and something
// was consumed), printing it whenever it changes.
func (a *app) waitLag(ctx context.Context, w io.Writer, id string) error {
	last := int64(-1)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := a.c.Status(ctx)
		if err != nil {
			return err
		}
		var b *wire.BindingStatus
		for i := range st.Bindings {
			if st.Bindings[i].ID == id {
				b = &st.Bindings[i]
			}
		}
		if b == nil {
			return fmt.Errorf("binding %q not found", id)
		}
		var lag, end int64
		for _, p := range b.LagPartitions() {
			lag += p.Lag
			end += p.End
		}
		if lag != last && b.LagError == "" {
			fmt.Fprintf(w, "%s  lag %d (end offsets total %d)\n", time.Now().Format("15:04:05.000"), lag, end)
			last = lag
		}
		if b.LagError == "" && lag == 0 && end > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("binding %q still has lag %d: %w", id, lag, ctx.Err())
		case <-tick.C:
		}
	}
}

func printStatus(w io.Writer, st wire.Status) {
	fmt.Fprintf(w, "AGENTS (%d)\n", len(st.Agents))
	_ = table(w, "ID\tADDR\tSTARTED", func(tw io.Writer) {
		for _, ag := range st.Agents {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", ag.ID, ag.Addr, ag.Started.Local().Format(time.DateTime))
		}
	})
	fmt.Fprintln(w, "\nPOOL")
	_ = table(w, "CLASS\tWARM\tACTIVE\tBUSY\tWAITING\tWAITED p50/p99 (latest)", func(tw io.Writer) {
		for _, o := range st.Occupancy { // sub-pools are the sp-NAME classes
			waited := "-"
			if o.Waited > 0 {
				waited = fmt.Sprintf("%.1f / %.1f ms (%d)", o.WaitP50Ms, o.WaitP99Ms, o.Waited)
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", o.Class, o.Warm, o.Active, o.Busy, o.Waiting, waited)
		}
	})
	if len(st.State) > 0 {
		fmt.Fprintln(w, "\nSTATE")
		_ = table(w, "TENANT\tRESOURCE\tHOST\tSIZE\tUSED\tATTACHED", func(tw io.Writer) {
			for _, r := range st.State {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d MiB\t%d MiB\t%d\n", r.Tenant, r.Name, r.Agent, r.SizeBytes>>20, r.UsedBytes>>20, r.Attached)
			}
		})
	}
	if len(st.Profiles) > 0 {
		fmt.Fprintln(w, "\nTASK PROFILES (decayed counts)")
		_ = table(w, "TENANT\tFROM\tTO\tRUNS\tFOLLOWS\tP\tDELAY\tLOAD\tPREDICTED\tHITS", func(tw io.Writer) {
			for _, p := range st.Profiles {
				fmt.Fprintf(tw, "%s\t%s\t%s%s\t%.1f\t%.1f\t%.2f\t%.0f ms\t%.0f ms\t%.1f\t%.1f\n", p.Tenant, p.From, p.To, qualSuffix(p.Qualifier),
					p.Runs, p.Follows, p.Probability, p.DelayMs, p.LoadMs, p.Predictions, p.Hits)
			}
		})
	}
	fmt.Fprintln(w, "\nBINDINGS")
	_ = table(w, "ID\tTOPIC\tFUNCTION\tSTATUS\tLAG\tTIME LAG\tDRAIN\tCONSUMED/S\tPARTITIONS", func(tw io.Writer) {
		for _, b := range st.Bindings {
			fn := b.Function + qualSuffix(b.Qualifier)
			if b.LagError != "" || b.Lag == nil {
				fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t(%s)\n", b.ID, b.Topic, fn, b.LagError)
				continue
			}
			l := b.Lag
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%.1f\t%d\n", b.ID, b.Topic, fn, l.Status, l.Records,
				seconds(l.Seconds), drain(l.DrainSeconds), l.ConsumeRate, len(l.Partitions))
		}
	})
	for _, b := range st.Bindings {
		if b.Lag != nil && b.Lag.Status != "OK" {
			fmt.Fprintf(w, "%s %s: %s\n", b.ID, b.Lag.Status, b.Lag.Reason)
		}
	}
	var active []wire.BindingStatus
	for _, b := range st.Bindings {
		if b.Activity != nil {
			active = append(active, b)
		}
	}
	if len(active) == 0 {
		return
	}
	fmt.Fprintln(w, "\nACTIVITY (this emberd, since start)")
	_ = table(w, "BINDING\tINVOCATIONS\tRECORDS\tERRORS\tHOT\tPOOL-HIT\tCOLD\tEVENT→START p50/p99\tFETCH→START p50/p99", func(tw io.Writer) {
		for _, b := range active {
			x := b.Activity
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f / %.2f ms\t%.2f / %.2f ms\n", b.ID, x.Invocations, x.Records,
				x.FunctionErrors+x.PlatformErrors, x.HotStarts, x.PoolHitStarts, x.ColdStarts,
				x.EventToStartP50Ms, x.EventToStartP99Ms, x.FetchToStartP50Ms, x.FetchToStartP99Ms)
		}
	})
	fmt.Fprintln(w, "\nCONSUMERS (this emberd, since start)")
	_ = table(w, "BINDING	PARTITIONS	GENERATION	IN-FLIGHT	FILTERED	EXPIRED	DLQ	AGE-DROPPED	PLATFORM-ERRORS	REBALANCES", func(tw io.Writer) {
		for _, b := range active {
			x := b.Activity
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", b.ID, x.Partitions, x.Generation, x.InFlight,
				x.Filtered, x.Expired, x.DeadLettered, x.AgeDropped, x.PlatformErrors, x.Rebalances)
		}
	})
	for _, b := range active {
		if b.Activity.Expired > 0 {
			fmt.Fprintf(w, "\nWARNING: binding %s lost %d records to retention before reading them (it fell behind by more than the topic's retention)\n",
				b.ID, b.Activity.Expired)
		}
	}
}
