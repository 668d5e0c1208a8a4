package embedded

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Config describes an embedded broker. The zero value is valid: a one-broker
// in-memory cluster on a random loopback port.
type Config struct {
	// ListenAddr is host:port to listen on. Default: "127.0.0.1:0" (random port).
	ListenAddr string
	// DataDir persists topics, records and offsets there when set. Default: "" (memory only).
	DataDir string
	// Partitions is the partition count of topics created with -1 partitions
	// or auto-created. Default: 4.
	Partitions int
	// AutoCreateTopics lets metadata requests create missing topics. Default: false.
	AutoCreateTopics bool
	// MinSessionTimeout is the smallest consumer-group session timeout the
	// broker accepts. Default: 6s (Kafka's default); tests lower it.
	MinSessionTimeout time.Duration
	// RetentionInterval is how often retention (retention.ms, default 7 days,
	// and retention.bytes) is enforced. Default: 5m. Negative disables it.
	RetentionInterval time.Duration
	// SeedTopics are created at start with Partitions partitions.
	SeedTopics []string
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.ListenAddr != "" {
		if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
			return fmt.Errorf("embedded broker: listen address %q: %w", c.ListenAddr, err)
		}
	}
	if c.Partitions < 0 || c.Partitions > 10000 {
		return fmt.Errorf("embedded broker: partitions %d out of range [0,10000]", c.Partitions)
	}
	if c.MinSessionTimeout < 0 {
		return errors.New("embedded broker: negative min session timeout")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.ListenAddr == "" {
		c.ListenAddr = "127.0.0.1:0"
	}
	if c.Partitions == 0 {
		c.Partitions = 4
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = 5 * time.Minute
	}
	return c
}

// Broker is a running embedded broker. Close it when done.
type Broker struct {
	cluster *kfake.Cluster
	addrs   []string
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// Start starts a broker as described by cfg.
func Start(cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	host, portStr, _ := net.SplitHostPort(cfg.ListenAddr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: port %q: %w", portStr, err)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			// kfake asks for 127.0.0.1:<port>; honour the configured host and port.
			return net.Listen(network, net.JoinHostPort(host, strconv.Itoa(port)))
		}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.AutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if cfg.MinSessionTimeout > 0 {
		opts = append(opts, kfake.GroupMinSessionTimeout(cfg.MinSessionTimeout))
	}
	if len(cfg.SeedTopics) > 0 {
		opts = append(opts, kfake.SeedTopics(int32(cfg.Partitions), cfg.SeedTopics...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker on %s: %w", cfg.ListenAddr, err)
	}
	b := &Broker{cluster: c, addrs: c.ListenAddrs(), stop: make(chan struct{})}
	ss := newSessions()
	ss.watch(c)
	b.wg.Add(1)
	go func() { defer b.wg.Done(); ss.run(b.addrs[0], b.stop) }()
	if cfg.RetentionInterval > 0 {
		b.wg.Add(1)
		go b.retentionLoop(cfg.RetentionInterval)
	}
	return b, nil
}

func (b *Broker) retentionLoop(every time.Duration) {
	defer b.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.cluster.ApplyRetention()
		}
	}
}

// Addrs returns the broker's listen addresses (host:port).
func (b *Broker) Addrs() []string { return append([]string(nil), b.addrs...) }

// Cluster returns the underlying kfake cluster, for tests that need its
// controls (fault injection, moving partitions).
func (b *Broker) Cluster() *kfake.Cluster { return b.cluster }

// Close stops the broker; with a DataDir its state is flushed to disk. Close
// is idempotent.
func (b *Broker) Close() {
	b.once.Do(func() {
		close(b.stop)
		b.wg.Wait()
		b.cluster.Close()
	})
}
