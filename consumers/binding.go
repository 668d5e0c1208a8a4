package consumers

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ember-run/ember/consumers/settings"
)

// Limits and defaults of a Binding beyond its settings.
const (
	DefaultDLQSuffix      = ".dlq"
	DefaultGroupIDPrefix  = "ember-"
	maxKafkaTopicNameSize = 249
)

// Binding connects a topic to a function. The zero values of the optional
// fields mean the documented defaults; call Validate to check one.
type Binding struct {
	// ID names the binding across tenants ("<tenant>/<id>"); it is the
	// Invocation's Source and a metrics label. Required.
	ID string
	// Tenant owns the function. Required.
	Tenant string
	// Function is the function's name within the tenant. Required.
	Function string
	// Qualifier is "" / "$LATEST", a version or an alias.
	Qualifier string
	// Topic is read. Required.
	Topic string
	// GroupID is the consumer group. Default: "ember-" + ID.
	GroupID string
	// ResultTopic, when set, receives each successful invocation's response
	// payload, keyed by invocation id. Default: "" (none).
	ResultTopic string
	// DeadLetterTopic receives records that could not be handled.
	// Default: Topic + ".dlq".
	DeadLetterTopic string
	// Settings are batching, ordering, starting position, error controls
	// and filters (package settings, shared with the registry).
	settings.Settings
	// Rewind, when set, moves the group's offsets once (see
	// settings.Rewind).
	Rewind *settings.Rewind
}

// Group returns the binding's consumer group (GroupID or its default).
func (b Binding) Group() string { return b.withDefaults().GroupID }

// withDefaults returns b with every defaulted field filled.
func (b Binding) withDefaults() Binding {
	if b.GroupID == "" {
		b.GroupID = DefaultGroupIDPrefix + b.ID
	}
	if b.DeadLetterTopic == "" {
		b.DeadLetterTopic = b.Topic + DefaultDLQSuffix
	}
	b.Settings = b.Settings.WithDefaults()
	return b
}

// ErrInvalidBinding is wrapped by every Validate error.
var ErrInvalidBinding = errors.New("invalid binding")

// Validate reports the first problem with b, wrapping ErrInvalidBinding.
func (b Binding) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("binding %q: %s: %w", b.ID, fmt.Sprintf(format, args...), ErrInvalidBinding)
	}
	switch {
	case b.ID == "":
		return bad("id is required")
	case b.Tenant == "":
		return bad("tenant is required")
	case b.Function == "":
		return bad("function is required")
	case b.Topic == "":
		return bad("topic is required")
	}
	for name, t := range map[string]string{"topic": b.Topic, "result topic": b.ResultTopic, "dead-letter topic": b.DeadLetterTopic} {
		if err := validTopic(t); err != nil {
			return bad("%s %q: %v", name, t, err)
		}
	}
	if err := b.Settings.Validate(); err != nil {
		return bad("%v", err)
	}
	if b.Rewind != nil {
		if err := b.Rewind.Validate(); err != nil {
			return bad("%v", err)
		}
	}
	d := b.withDefaults()
	if d.DeadLetterTopic == d.Topic {
		return bad("dead-letter topic is the source topic")
	}
	if d.ResultTopic == d.Topic {
		return bad("result topic is the source topic (it would invoke itself)")
	}
	return validTopic(d.DeadLetterTopic)
}

func validTopic(t string) error {
	if t == "" {
		return nil
	}
	if len(t) > maxKafkaTopicNameSize {
		return fmt.Errorf("longer than %d characters", maxKafkaTopicNameSize)
	}
	if t == "." || t == ".." {
		return errors.New("not a valid name")
	}
	if i := strings.IndexFunc(t, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}); i >= 0 {
		return fmt.Errorf("character %q not allowed (use a-z A-Z 0-9 . _ -)", t[i])
	}
	return nil
}
