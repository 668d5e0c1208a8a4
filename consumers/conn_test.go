package consumers_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/invoke"
	"github.com/ember-run/ember/internal/pki"
)

// A broker that requires TLS and SASL/SCRAM: the topic admin, the group
// members, the partition readers and the producers of the dead-letter
// topic all connect with the Manager's Conn; a wrong password is refused.
func TestTLSAndSASL(t *testing.T) {
	ca, err := pki.NewAuthority()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue("agent", "kafka", "127.0.0.1") // any role: the broker's certificate only needs the address
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "ember", "s3cret"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}),
		kfake.GroupMinSessionTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := cluster.ListenAddrs()
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}

	wrong, err := consumers.NewSASL(consumers.SASLScramSHA512, "ember", "guess")
	if err != nil {
		t.Fatal(err)
	}
	bad, err := consumers.NewTopics(brokers, consumers.Conn{TLS: clientTLS, SASL: wrong})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.CreateTopic(t.Context(), "secure", 2); err == nil {
		t.Fatal("a wrong password created a topic")
	}
	_ = bad.Close()

	mech, err := consumers.NewSASL(consumers.SASLScramSHA512, "ember", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	conn := consumers.Conn{TLS: clientTLS, SASL: mech}
	topics, err := consumers.NewTopics(brokers, conn)
	if err != nil {
		t.Fatal(err)
	}
	defer topics.Close()
	if err := topics.CreateTopic(t.Context(), "secure", 2); err != nil {
		t.Fatal(err)
	}
	var msgs []kafka.Message
	for i := range 20 {
		msgs = append(msgs, kafka.Message{Topic: "secure", Key: []byte{byte(i)}, Value: []byte("v")})
	}
	if err := topics.Produce(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}

	b := binding("secure", "secure")
	b.MaxRetryAttempts = 0
	inv := &recInvoker{t: t, behave: func(n int, _ []events.KafkaRecord) (invoke.Result, error) {
		if n == 0 {
			return failed("First"), nil // one batch is dead-lettered: the producer connects too
		}
		return ok, nil
	}}
	m, err := consumers.New(brokers, inv, append(testOpts(), consumers.WithConn(conn))...)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply([]consumers.Binding{b}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(t.Context())
	go func() { done <- m.Run(runCtx) }()
	defer func() { stop(); <-done }()
	waitCommitted(t, m, b, 20*time.Second)
	if n := len(recordsOf(inv.snapshot())); n != 20 {
		t.Fatalf("invoked %d records, want 20", n)
	}
	if st := m.Stats()["secure"]; st.DLQRecords == 0 {
		t.Fatalf("stats %+v: want a dead-lettered batch", st)
	}
}
