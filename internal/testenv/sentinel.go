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
// the replica when the primary is down for four seconds.
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
	// A replica's first copy starts at once, not after Redis's default 5 s
	// wait for more replicas to share a diskless transfer.
	s := &Sentinels{Primary: startRedis(t, true, "--repl-diskless-sync-delay", "0")}
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
	t.Cleanup(func() {
		if t.Failed() {
			s.printLogs()
		}
	})
	s.waitReady()
	return s
}

// printLogs prints the tail of every server's and sentinel's log: a
// failover that went wrong is told there (who was voted down, when, which
// replica was promoted and whether it had synced).
func (s *Sentinels) printLogs() {
	t := s.Primary.t
	servers := map[string]*RedisServer{"primary": s.Primary, "replica": s.Replica}
	for i, sn := range s.sentinels {
		servers[fmt.Sprintf("sentinel %d", i+1)] = sn
	}
	for name, srv := range servers {
		b, err := os.ReadFile(filepath.Join(srv.dir, "redis.log"))
		if err != nil {
			t.Logf("%s %s: %v", name, srv.Addr, err)
			continue
		}
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("%s %s log:\n%s", name, srv.Addr, b)
	}
}

// waitReady polls the replica until its first sync with the primary is
// done, then the sentinels until each sees the replica and two other
// sentinels. The primary lists a replica that is still waiting for its
// first copy (a diskless sync starts up to 5 s late): promoted then, it
// would be empty.
func (s *Sentinels) waitReady() {
	s.Primary.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	rc := redis.NewClient(&redis.Options{Addr: s.Replica.Addr})
	for {
		info, err := rc.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0") {
			break
		}
		if time.Now().After(deadline) {
			rc.Close()
			s.Primary.t.Fatalf("replica %s never synced: %v\n%s", s.Replica.Addr, err, info)
		}
		time.Sleep(50 * time.Millisecond) // polling a daemon's replication state
	}
	rc.Close()
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
