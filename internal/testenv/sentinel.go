package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name the sentinels of StartSentinels watch.
const SentinelMaster = "ember"

// Sentinels is a replicated Redis watched by Redis Sentinel: a primary
// with AOF, a replica of it, and three sentinels (quorum two) that promote
// the replica when the primary is down for a second.
type Sentinels struct {
	// URL is the --redis flag that reaches the primary through the
	// sentinels (redisconn's redis-sentinel:// form).
	URL       string
	Primary   *RedisServer
	Replica   *RedisServer
	sentinels []*RedisServer
}

// StartSentinels starts the primary, its replica and three sentinels, and
// waits until every sentinel knows the replica and the other sentinels (a
// failover needs both). Everything stops when t ends.
func StartSentinels(t testing.TB) *Sentinels {
	t.Helper()
	s := &Sentinels{Primary: StartRedis(t, true)}
	s.Replica = startRedis(t, true, "--replicaof", "127.0.0.1", fmt.Sprint(s.Primary.port))
	var addrs []string
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		// Sentinel rewrites its configuration file: it must be its own.
		conf := filepath.Join(dir, "sentinel.conf")
		body := strings.Join([]string{
			fmt.Sprintf("port %d", port), "bind 127.0.0.1", "dir " + dir, "logfile " + filepath.Join(dir, "redis.log"),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 2", SentinelMaster, s.Primary.port),
			// Not 1 s: on a loaded 2-core CI machine a primary that answers
			// late was failed over before the test killed it, and writes it
			// took meanwhile were lost (asynchronous replication).
			fmt.Sprintf("sentinel down-after-milliseconds %s 4000", SentinelMaster),
			fmt.Sprintf("sentinel failover-timeout %s 10000", SentinelMaster),
			fmt.Sprintf("sentinel parallel-syncs %s 1", SentinelMaster),
		}, "\n") + "\n"
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		sn := &RedisServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), t: t, bin: s.Primary.bin, dir: dir, port: port,
			args: []string{conf, "--sentinel"}}
		sn.Start()
		t.Cleanup(sn.stop)
		s.sentinels = append(s.sentinels, sn)
		addrs = append(addrs, sn.Addr)
	}
	s.URL = "redis-sentinel://" + strings.Join(addrs, ",") + "/" + SentinelMaster
	s.waitReady()
	return s
}

// waitReady polls the sentinels until each sees one replica and two other
// sentinels.
func (s *Sentinels) waitReady() {
	s.Primary.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, sn := range s.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr})
		for {
			m, err := c.Master(context.Background(), SentinelMaster).Result()
			if err == nil && m["num-slaves"] == "1" && m["num-other-sentinels"] == "2" {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				s.Primary.t.Fatalf("sentinel %s not ready: %v, %v", sn.Addr, m, err)
			}
			time.Sleep(100 * time.Millisecond) // polling daemons that discover each other every 2 s
		}
		c.Close()
	}
}

// PrimaryAddr is the address the sentinels give for the primary now.
func (s *Sentinels) PrimaryAddr(ctx context.Context) (string, error) {
	c := redis.NewSentinelClient(&redis.Options{Addr: s.sentinels[0].Addr})
	defer c.Close()
	a, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
	if err != nil {
		return "", err
	}
	return a[0] + ":" + a[1], nil
}
