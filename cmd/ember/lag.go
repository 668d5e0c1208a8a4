package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/engine/api/wire"
)

func (a *app) lagCmd() *cobra.Command {
	var since, every time.Duration
	var watch bool
	cmd := &cobra.Command{
		Use:   "lag BINDING",
		Short: "Show a binding's lag per partition: records, seconds, status and a sparkline of the last minutes",
		Long: "Show a binding's consumer lag: per partition the offset lag, the time lag (age of the oldest\n" +
			"record not committed), its status (OK, REWIND, WARN, STALL, STOP, ERR; see docs/metrics.md),\n" +
			"the consume rate and time to drain, and a sparkline of the lag over --since.\n" +
			"--watch redraws every --every until interrupted.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.repeat(cmd.Context(), cmd.OutOrStdout(), watch, every, func(ctx context.Context, w io.Writer) error {
				h, err := a.c.BindingLag(ctx, args[0], since)
				if err != nil {
					return err
				}
				printLag(w, h)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&since, "since", 10*time.Minute, "how much history the sparklines show (at most 1h)")
	cmd.Flags().BoolVar(&watch, "watch", false, "redraw until interrupted")
	cmd.Flags().DurationVar(&every, "every", 2*time.Second, "with --watch: time between redraws")
	return cmd
}

// repeat runs show once, or with watch every interval until ctx is done,
// clearing the terminal between screens.
func (a *app) repeat(ctx context.Context, w io.Writer, watch bool, every time.Duration, show func(context.Context, io.Writer) error) error {
	if !watch {
		return show(ctx, w)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		fmt.Fprint(w, "\033[H\033[2J") // home, clear
		fmt.Fprintf(w, "%s  (every %s, ctrl-c to stop)\n\n", time.Now().Format(time.TimeOnly), every)
		if err := show(ctx, w); err != nil {
			fmt.Fprintf(w, "error: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func printLag(w io.Writer, h wire.LagHistory) {
	l := h.Lag
	fmt.Fprintf(w, "binding %s: %s, %d records and %s behind, %.1f records/s consumed, %.1f produced, drains in %s\n",
		h.Binding, l.Status, l.Records, seconds(l.Seconds), l.ConsumeRate, l.ProduceRate, drain(l.DrainSeconds))
	if l.Status != "OK" && l.Reason != "" {
		fmt.Fprintf(w, "  %s\n", l.Reason)
	}
	spark := map[int]string{}
	for _, ph := range h.History {
		vals := make([]float64, len(ph.Points))
		for i, p := range ph.Points {
			vals[i] = float64(p.Lag)
		}
		spark[ph.Partition] = sparkline(vals, 40)
	}
	fmt.Fprintln(w)
	_ = table(w, "PARTITION\tSTATUS\tEND\tCOMMITTED\tLAG\tTIME LAG\tCONSUMED/S\tDRAIN\tLAG OVER TIME", func(tw io.Writer) {
		for _, p := range l.Partitions {
			st := p.Status
			if p.Error != "" {
				st += " (" + p.Error + ")"
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%s\t%.1f\t%s\t%s\n", p.Partition, st, p.End, p.Committed, p.Lag,
				seconds(p.Seconds), p.ConsumeRate, drain(p.DrainSeconds), spark[p.Partition])
		}
	})
}

// sparkline draws the last width values on eight levels, scaled to their
// maximum; all zero is a flat baseline.
func sparkline(vals []float64, width int) string {
	const levels = "▁▂▃▄▅▆▇█"
	bars := []rune(levels)
	if len(vals) > width {
		vals = vals[len(vals)-width:]
	}
	top := 0.0
	for _, v := range vals {
		top = math.Max(top, v)
	}
	out := make([]rune, len(vals))
	for i, v := range vals {
		n := 0
		if top > 0 {
			n = int(math.Round(v / top * float64(len(bars)-1)))
		}
		out[i] = bars[n]
	}
	return string(out)
}

// seconds formats a time lag.
func seconds(s float64) string {
	if s == 0 {
		return "0s"
	}
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

// drain formats a drain estimate (-1: the lag does not shrink).
func drain(s float64) string {
	if s < 0 {
		return "never"
	}
	return seconds(s)
}
