package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ember-run/ember/engine/api/wire"
)

// asyncConfigCmd sets how a function's asynchronous invocations are
// retried and where their outcomes go.
func (a *app) asyncConfigCmd() *cobra.Command {
	var retries int
	var maxAge time.Duration
	var ac wire.AsyncConfig
	cmd := &cobra.Command{
		Use:   "async-config FUNCTION [--retries N] [--max-age D] [--on-success DEST] [--on-failure DEST]",
		Short: "Set the retries, maximum event age and destinations (topic:NAME or function:NAME) of asynchronous invocations",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ac.MaxRetryAttempts = &retries
			ac.MaxEventAgeSeconds = int64(maxAge / time.Second)
			out, err := a.c.PutAsyncConfig(cmd.Context(), args[0], ac)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d retries, max event age %v, on success %s, on failure %s\n", args[0],
				*out.MaxRetryAttempts, time.Duration(out.MaxEventAgeSeconds)*time.Second, orDash(out.OnSuccess), orDash(out.OnFailure))
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&retries, "retries", 2, "retries after a function error: 0 to 2 (1 s, then 2 s later by default)")
	f.DurationVar(&maxAge, "max-age", 6*time.Hour, "drop an invocation not run within this: 1m to 6h (to the failure destination)")
	f.StringVar(&ac.OnSuccess, "on-success", "", "where a record of each success goes: topic:NAME or function:NAME")
	f.StringVar(&ac.OnFailure, "on-failure", "", "where a record of each failure goes: topic:NAME or function:NAME")
	return cmd
}

// invocationCmd reads asynchronous invocations.
func (a *app) invocationCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "invocation", Short: "Asynchronous invocations"}
	cmd.AddCommand(&cobra.Command{
		Use: "get ID", Short: "Show an asynchronous invocation's state, attempts and result (kept 24 h after it ended)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := a.c.Invocation(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(struct {
				wire.Invocation
				Result json.RawMessage `json:"result,omitempty"`
			}{inv, asRawJSON(inv.Result)}, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return nil
		},
	})
	return cmd
}

// asRawJSON shows a result as JSON when it is, else as a JSON string.
func asRawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}
