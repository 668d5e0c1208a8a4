package consumers

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/consumers/settings"
)

func TestBindingValidate(t *testing.T) {
	ok := Binding{ID: "b", Tenant: "t", Function: "f", Topic: "orders"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid binding: %v", err)
	}
	d := ok.withDefaults()
	if d.GroupID != "ember-b" || d.BatchSize != 100 || d.StartingPosition != settings.Latest ||
		d.MaxBatchBytes != 6<<20 || d.DeadLetterTopic != "orders.dlq" || d.MaxRetryAttempts != 0 ||
		d.Ordering != settings.OrderPartition || d.MaxConcurrency != 10 {
		t.Fatalf("defaults: %+v", d)
	}
	cases := []struct {
		name string
		mod  func(*Binding)
		want string
	}{
		{"no id", func(b *Binding) { b.ID = "" }, "id is required"},
		{"no tenant", func(b *Binding) { b.Tenant = "" }, "tenant"},
		{"no function", func(b *Binding) { b.Function = "" }, "function"},
		{"no topic", func(b *Binding) { b.Topic = "" }, "topic is required"},
		{"bad topic", func(b *Binding) { b.Topic = "a b" }, "not allowed"},
		{"batch too big", func(b *Binding) { b.BatchSize = 10001 }, "batch size"},
		{"negative window", func(b *Binding) { b.BatchWindow = -time.Second }, "batch window"},
		{"position", func(b *Binding) { b.StartingPosition = "middle" }, "starting position"},
		{"tiny batch bytes", func(b *Binding) { b.MaxBatchBytes = 10 }, "max batch bytes"},
		{"retry forever without an age", func(b *Binding) { b.MaxRetryAttempts = -1 }, "needs a max record age"},
		{"bad filter", func(b *Binding) { b.Filters = []string{`{"value":"x"}`} }, "filter 0"},
		{"rewind without id", func(b *Binding) { b.Rewind = &settings.Rewind{To: time.Now()} }, "positive id"},
		{"dlq is source", func(b *Binding) { b.DeadLetterTopic = "orders" }, "dead-letter topic is the source"},
		{"result is source", func(b *Binding) { b.ResultTopic = "orders" }, "result topic is the source"},
	}
	for _, c := range cases {
		b := ok
		c.mod(&b)
		err := b.Validate()
		if err == nil || !errors.Is(err, ErrInvalidBinding) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want error containing %q", c.name, err, c.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: 450 * time.Millisecond}
	var got []time.Duration
	for i := 0; i < 5; i++ {
		got = append(got, b.next())
	}
	want := []time.Duration{100, 200, 400, 450, 450}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("backoff %v", got)
		}
	}
}
