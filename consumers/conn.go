package consumers

import (
	"crypto/tls"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// SASL mechanisms Conn takes.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Conn is how Ember connects to the brokers: TLS and SASL, both optional.
// Every client of the package (group members, partition readers, admin
// requests, producers) uses it.
type Conn struct {
	// TLS, when set, encrypts every connection (and verifies the brokers).
	TLS *tls.Config
	// SASL authenticates every connection; nil: none.
	SASL sasl.Mechanism
}

// NewSASL returns the mechanism for name (SASLPlain, SASLScramSHA256,
// SASLScramSHA512) with a user and password.
func NewSASL(name, user, password string) (sasl.Mechanism, error) {
	switch name {
	case SASLPlain:
		return plain.Mechanism{Username: user, Password: password}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, user, password)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, user, password)
	}
	return nil, fmt.Errorf("consumers: SASL mechanism %q: want %s, %s or %s", name, SASLPlain, SASLScramSHA256, SASLScramSHA512)
}

// Dialer returns a Dialer for readers and consumer groups.
func (c Conn) Dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: c.TLS, SASLMechanism: c.SASL}
}

// Transport returns a new Transport for admin clients and producers. Each
// caller gets its own: a Transport caches metadata for 6 s.
func (c Conn) Transport() *kafka.Transport {
	return &kafka.Transport{TLS: c.TLS, SASL: c.SASL}
}
