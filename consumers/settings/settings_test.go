package settings

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	if err := (Settings{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	d := Settings{StartingPosition: "earliest"}.WithDefaults()
	if d.BatchSize != 100 || d.MaxBatchBytes != 6<<20 || d.StartingPosition != TrimHorizon || d.Ordering != OrderPartition ||
		d.MaxConcurrency != 10 || d.IsolationLevel != ReadUncommitted {
		t.Fatalf("defaults %+v", d)
	}
	for name, s := range map[string]Settings{
		"batch":            {BatchSize: MaxBatchSize + 1},
		"window":           {BatchWindow: time.Hour},
		"bytes":            {MaxBatchBytes: 10},
		"position":         {StartingPosition: "middle"},
		"at_timestamp":     {StartingPosition: AtTimestamp},
		"stray timestamp":  {StartingTimestamp: time.Now()},
		"ordering":         {Ordering: "random"},
		"concurrency":      {MaxConcurrency: 1000},
		"retries":          {MaxRetryAttempts: -2},
		"forever, no age":  {MaxRetryAttempts: -1},
		"age":              {MaxRecordAge: time.Second},
		"filters":          {Filters: []string{"{}", "{}", "{}", "{}", "{}", "{}"}},
		"filter not json":  {Filters: []string{"value = 1"}},
		"filter too large": {Filters: []string{`{"value":"` + strings.Repeat("x", MaxFilterBytes) + `"}`}},
		"isolation":        {IsolationLevel: "serializable"},
	} {
		if err := s.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	ok := Settings{MaxRetryAttempts: -1, MaxRecordAge: time.Minute, StartingPosition: AtTimestamp,
		StartingTimestamp: time.Now(), Ordering: OrderKey, Filters: []string{`{"value":{"a":[1]}}`}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}
