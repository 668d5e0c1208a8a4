package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis starts a private redis-server for t and returns a client and its
// address. The server is shut down when t ends.
func Redis(t testing.TB) (*redis.Client, string) {
	t.Helper()
	srv := StartRedis(t, false)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, srv.Addr
}

// RedisServer is a private redis-server that a test can kill and start
// again on the same port and data directory.
type RedisServer struct {
	Addr string
	t    testing.TB
	bin  string
	dir  string
	port int
	aof  bool
	// args replace the command line of a data server (a sentinel's).
	args []string
	// extra are added to a data server's command line (--replicaof).
	extra []string
	cmd   *exec.Cmd
}

// StartRedis starts a private redis-server for t, with AOF persistence
// (fsync every second) when persistent is set, and shuts it down when t
// ends.
func StartRedis(t testing.TB, persistent bool) *RedisServer {
	t.Helper()
	return startRedis(t, persistent)
}

// StartRedisOn is StartRedis listening on addr too (a bridge address that
// other network namespaces reach), without protected mode: hosts of a
// multi-host test connect from there. Addr stays the loopback address.
func StartRedisOn(t testing.TB, addr string) *RedisServer {
	t.Helper()
	return startRedis(t, false, "--bind", "127.0.0.1", addr, "--protected-mode", "no")
}

func startRedis(t testing.TB, persistent bool, extra ...string) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not installed (run deploy/setup.sh install): %v", err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	s := &RedisServer{Addr: fmt.Sprintf("127.0.0.1:%d", port), t: t, bin: bin, dir: t.TempDir(), port: port, aof: persistent, extra: extra}
	s.Start()
	t.Cleanup(s.stop)
	return s
}

func (s *RedisServer) stop() {
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Start starts the server (again) and waits until it answers.
func (s *RedisServer) Start() {
	s.t.Helper()
	aof := "no"
	if s.aof {
		aof = "yes"
	}
	args := s.args
	if args == nil {
		args = append([]string{"--port", fmt.Sprint(s.port), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", aof, "--appendfsync", "everysec", "--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log")}, s.extra...)
	}
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not answer: %v\n%s", err, log)
		}
		time.Sleep(10 * time.Millisecond) // polling a starting daemon, not synchronising test logic
	}
}

// Kill sends SIGKILL, as a crash would, and reaps the process.
func (s *RedisServer) Kill() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port is the server's TCP port.
func (s *RedisServer) Port() int { return s.port }
