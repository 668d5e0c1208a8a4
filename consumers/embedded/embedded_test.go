package embedded

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestPersistsAcrossRestartOnFixedAddress(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := Config{ListenAddr: addr, DataDir: dir, Partitions: 2, SeedTopics: []string{"keep"}}
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Addrs(); len(got) != 1 || got[0] != addr {
		t.Fatalf("listening on %v, want %s", got, addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "keep", BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	if err := w.WriteMessages(ctx, kafka.Message{Key: []byte("a"), Value: []byte("1")}, kafka.Message{Key: []byte("b"), Value: []byte("2")}); err != nil {
		t.Fatal(err)
	}
	_ = w.Close()
	b.Close()
	b.Close() // idempotent

	b2, err := Start(cfg)
	if err != nil {
		t.Fatalf("restart on the same address and dir: %v", err)
	}
	defer b2.Close()
	// A new transport: the default one pools connections to the first broker.
	cl := &kafka.Client{Addr: kafka.TCP(addr), Transport: &kafka.Transport{}}
	var reqs []kafka.OffsetRequest
	for p := 0; p < 2; p++ {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{"keep": reqs}})
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, p := range lo.Topics["keep"] {
		if p.Error != nil {
			t.Fatal(p.Error)
		}
		total += p.LastOffset
	}
	if total != 2 {
		t.Fatalf("after restart the topic holds %d records, want 2", total)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{ListenAddr: "nope"}, {Partitions: -1}, {MinSessionTimeout: -time.Second}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: want an error", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
}
