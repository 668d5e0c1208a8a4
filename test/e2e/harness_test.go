package e2e

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/tenants"
	"github.com/ember-run/ember/internal/testenv"
)

// Shared by every test of the binary: built once, one containerd.
var (
	binDir string
	ctrd   *testenv.ContainerdDaemon
	zips   = map[string]string{} // example name -> package zip
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if role := os.Getenv(relayRoleEnv); role != "" {
		if err := runRelayRole(role); err != nil {
			fmt.Fprintln(os.Stderr, "relay:", err)
			return 1
		}
		return 0
	}
	flag.Parse()
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		logLevel = "info"
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e tests need root (containerd, cgroups, namespaces)")
		return 1
	}
	dir, err := os.MkdirTemp("", "ember-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	for _, pkg := range []string{"cmd/emberd", "cmd/ember-init", "cmd/ember-shim", "cmd/ember-agent", "cmd/ember"} {
		if err := testenv.Build(pkg, filepath.Join(dir, filepath.Base(pkg))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	for _, ex := range []string{"kafka-echo", "kafka-picky", "fail", "sleep", "exit", "whoami", "hostile", "counter", "http-echo", "caller"} {
		p := filepath.Join(dir, ex+".zip")
		if err := testenv.ExampleZip(ex, p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		zips[ex] = p
	}
	ctrd, err = testenv.StartContainerd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := ctrd.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stop containerd:", err)
		}
	}()
	return m.Run()
}

// logLevel of the emberd under test: debug for tests (their logs explain
// failures), info for benchmarks (debug logs every invocation).
var logLevel = "debug"

// stack is one emberd with its own Redis, state directory and ports.
type stack struct {
	t       testing.TB
	name    string
	dir     string
	redis   string
	api     string
	broker  string
	agent   string
	peer    string
	gateway string // tenants' routes
	debug   string // Go's pprof handlers, for the goroutines of a hang
	bridge  string
	subnet  string
	uidBase int
	pool    string
	extra   []string
	cmd     *exec.Cmd
	exited  chan error
	// client acts as tenant "e2e"; admin holds the administrator key.
	client   *client.Client
	admin    *client.Client
	adminKey string
	clients  map[string]*client.Client // by tenant, made by tenantClient
	// tenantKey is tenant e2e's API key.
	tenantKey string
	restarts  int
	// ownBroker: the stack picked its broker's address (not an outside one),
	// on brokerIP (127.0.0.1 when empty).
	ownBroker bool
	brokerIP  string
	// rebinds counts first starts retried on other ports.
	rebinds int
}

// stacks counts the stacks this test binary made: each gets a bridge,
// subnet and host uid range of its own.
var stacks atomic.Int32

// tenant is the tenant every e2e stack's functions belong to.
const tenant = "e2e"

// topic is the Kafka name of the tenant's topic name.
func topic(name string) string { return tenant + "." + name }

func newStack(t testing.TB, pool string, extra ...string) *stack {
	t.Helper()
	return newStackWithRedis(t, testenv.StartRedis(t, false).Addr, pool, extra...)
}

// newStackWithRedis is newStack on a Redis the test controls.
func newStackWithRedis(t testing.TB, redis string, pool string, extra ...string) *stack {
	t.Helper()
	s := startStack(t, redis, pool, "", extra...)
	s.client = s.tenantClient(tenant)
	return s
}

// startStack starts an emberd on redis (its --redis); broker, when set, is an outside
// broker (given as --brokers in extra) the stack's helpers use.
func startStack(t testing.TB, redis string, pool, broker string, extra ...string) *stack {
	t.Helper()
	s := prepareStack(t, redis, pool, extra...)
	if broker != "" {
		s.broker = broker
	} else {
		s.ownBroker = true
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// prepareStack makes a stack's directory, names and addresses; start
// runs it.
func prepareStack(t testing.TB, redis string, pool string, extra ...string) *stack {
	t.Helper()
	// runc mounts from inside the instance's user namespace: every parent
	// of the state directory must be searchable by others (t.TempDir is 0700).
	dir, err := os.MkdirTemp("", "ember-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &stack{
		t: t, name: strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), dir: dir, redis: redis,
		api: freeAddr(t), broker: freeAddr(t), agent: freeAddr(t), peer: freeAddr(t), gateway: freeAddr(t), debug: freeAddr(t), pool: pool, extra: extra,
	}
	n := int(stacks.Add(1))
	s.name = fmt.Sprintf("%s-%d", s.name, n) // the agent's id: one per stack, even in one test
	s.bridge = fmt.Sprintf("embe2e%d", n)
	s.subnet = fmt.Sprintf("10.210.%d.0/24", n%250)
	s.uidBase = 200_000_000 + n*64*65536
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", s.bridge).Run() })
	s.adminKey = tenants.NewKey()
	var err2 error
	if s.admin, err2 = client.New("http://"+s.api, client.WithAPIKey(s.adminKey)); err2 != nil {
		t.Fatal(err2)
	}
	return s
}

// freeAddr is a loopback address no socket was bound to a moment ago.
func freeAddr(t testing.TB) string { return freeAddrOn(t, "127.0.0.1") }

// freeAddrOn is an address on ip no socket was bound to a moment ago.
func freeAddrOn(t testing.TB, ip string) string {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// start runs emberd and waits until its API answers and its warming pool
// holds an instance.
func (s *stack) start() {
	s.t.Helper()
	logf, err := os.OpenFile(filepath.Join(s.dir, fmt.Sprintf("emberd-%d.log", s.restarts)), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	args := append([]string{
		"--state-dir", s.dir, "--redis", s.redis, "--listen", s.api,
		"--embedded-broker", s.broker, "--containerd", ctrd.Address, "--namespace", ctrd.Namespace,
		"--init-binary", filepath.Join(binDir, "ember-init"), "--agent-id", s.name, "--agent-listen", s.agent, "--peer-listen", s.peer,
		"--pool", s.pool, "--session-timeout", "6s", "--lag-interval", "500ms", "--gateway-listen", s.gateway, "--debug-addr", s.debug, "--log-format", "json", "--log-level", logLevel,
		"--bridge", s.bridge, "--subnet", s.subnet, "--uid-base", strconv.Itoa(s.uidBase),
		// A test's last stop must leave nothing running; tests of restarts
		// that keep the pool warm say --keep-instances in extra.
		"--keep-instances=false",
	}, s.extra...)
	s.cmd = exec.Command(filepath.Join(binDir, "emberd"), args...)
	s.cmd.Env = append(os.Environ(), "EMBER_ADMIN_KEY="+s.adminKey)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.exited = make(chan error, 1)
	go func() { s.exited <- s.cmd.Wait(); logf.Close() }()
	s.restarts++
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-s.exited:
			// Another process took a port freeAddr found free before
			// emberd bound it: a first start tries other ports (a restart
			// keeps its addresses, which its clients hold).
			if s.restarts == 1 && s.rebinds < 3 && strings.Contains(s.log(), "address already in use") {
				s.rebinds++
				s.restarts = 0
				s.api, s.agent, s.peer, s.gateway, s.debug = freeAddr(s.t), freeAddr(s.t), freeAddr(s.t), freeAddr(s.t), freeAddr(s.t)
				if s.ownBroker {
					s.broker = freeAddrOn(s.t, cmp.Or(s.brokerIP, "127.0.0.1"))
				}
				var cerr error
				if s.admin, cerr = client.New("http://"+s.api, client.WithAPIKey(s.adminKey)); cerr != nil {
					s.t.Fatal(cerr)
				}
				s.start()
				return
			}
			s.t.Fatalf("emberd exited during start-up: %v\n%s", err, s.log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := s.admin.Status(ctx)
		cancel()
		if err == nil && len(st.Agents) > 0 && warm(st) > 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("emberd not ready after 90s (last: %v)\n%s", err, s.log())
		}
		time.Sleep(50 * time.Millisecond) // polling a starting daemon
	}
}

// waitWarm waits until the warming pool holds an instance (a refill after
// a claim), for at most a minute.
func (s *stack) waitWarm() { s.t.Helper(); s.waitWarmN(1) }

// waitWarmN waits until the warming pool holds n instances.
func (s *stack) waitWarmN(n int) {
	s.t.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		st, err := s.admin.Status(s.ctx())
		if err == nil && warm(st) >= n {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatal("pool never refilled")
		}
		time.Sleep(20 * time.Millisecond) // polling the pool refill
	}
}

func warm(st wire.Status) int {
	n := 0
	for _, o := range st.Occupancy {
		n += o.Warm
	}
	return n
}

// kill sends SIGKILL, as a crash would.
func (s *stack) kill() {
	s.t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
}

// stop shuts emberd down gracefully and fails the test if it does not exit
// cleanly within 60 s.
func (s *stack) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.exited:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			s.t.Errorf("emberd: %v", err)
		} else if err != nil {
			s.t.Errorf("emberd exited with %v on SIGTERM\n%s", err, s.log())
		}
	case <-time.After(60 * time.Second):
		stacks := s.goroutines()
		// SIGQUIT makes the Go runtime print every goroutine: where it hangs
		// (when its pprof handlers did not answer).
		_ = s.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		s.t.Errorf("emberd did not stop within 60s of SIGTERM\n%s", s.hangReport(stacks))
	}
	s.cmd = nil
}

// hangReport returns the goroutines in Ember's code (stacks, from
// goroutines; else from the dump of an emberd sent SIGQUIT), then the last
// lines it logged (without the agent's).
func (s *stack) hangReport(stacks string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("emberd-%d.log", s.restarts-1)))
	logs, dump, _ := strings.Cut(string(b), "SIGQUIT: quit")
	var lines []string
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, `"component":"agent"`) {
			lines = append(lines, l)
		}
	}
	lines = lines[max(0, len(lines)-40):]
	if stacks == "" {
		var gs []string
		for _, g := range strings.Split(dump, "\n\n") {
			if strings.Contains(g, "ember-run/ember/") {
				gs = append(gs, g)
			}
		}
		stacks = strings.Join(gs, "\n\n")
	}
	const limit = 60000
	if len(stacks) > limit {
		stacks = stacks[:limit] + "\n(cut)"
	}
	return "--- goroutines in Ember's code:\n" + stacks + "\n--- last lines logged:\n" + strings.Join(lines, "\n")
}

// goroutines returns emberd's goroutines that run Ember's or kafka-go's code, identical
// stacks counted once (pprof's debug=1), or "" if it does not answer.
func (s *stack) goroutines() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.debug+"/debug/pprof/goroutine?debug=1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var gs []string
	for _, g := range strings.Split(string(b), "\n\n") {
		if strings.Contains(g, "ember-run/ember/") || strings.Contains(g, "kafka-go") {
			gs = append(gs, g)
		}
	}
	return strings.Join(gs, "\n\n")
}

// log returns the tail of the current emberd log, for failure messages.
func (s *stack) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("emberd-%d.log", s.restarts-1)))
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	return string(b)
}

func (s *stack) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s.t.Cleanup(cancel)
	return ctx
}

// deploy uploads an example as a function.
func (s *stack) deploy(name, example string, cfg wire.FunctionConfig) wire.Function {
	s.t.Helper()
	return s.deployAs(s.client, name, example, cfg)
}

// deployAs deploys an example function as the tenant of c.
func (s *stack) deployAs(c *client.Client, name, example string, cfg wire.FunctionConfig) wire.Function {
	s.t.Helper()
	f, err := os.Open(zips[example])
	if err != nil {
		s.t.Fatal(err)
	}
	defer f.Close()
	fn, err := c.DeployFunction(s.ctx(), name, cfg, f)
	if err != nil {
		s.t.Fatalf("deploy %s: %v", name, err)
	}
	return fn
}

// tenantClient creates tenant name and returns a client acting as it.
func (s *stack) tenantClient(name string) *client.Client {
	s.t.Helper()
	k, err := s.admin.CreateTenant(s.ctx(), name)
	if err != nil {
		s.t.Fatalf("create tenant %s: %v", name, err)
	}
	if name == tenant {
		s.tenantKey = k.APIKey
	}
	c, err := client.New("http://"+s.api, client.WithAPIKey(k.APIKey))
	if err != nil {
		s.t.Fatal(err)
	}
	if s.clients == nil {
		s.clients = map[string]*client.Client{}
	}
	s.clients[name] = c
	return c
}

// createTopic creates the tenant's topic name through the API. With
// configs, it is first created in Kafka directly with them (as an operator
// would for settings the API does not take), then recorded through the API.
func (s *stack) createTopic(name string, partitions int, configs ...kafka.ConfigEntry) {
	s.t.Helper()
	if len(configs) > 0 {
		createKafkaTopic(s.t, s.broker, topic(name), partitions, configs...)
	}
	if _, err := s.client.CreateTopic(s.ctx(), name, partitions); err != nil {
		s.t.Fatalf("create topic %s: %v", name, err)
	}
}

// createKafkaTopic creates topic in Kafka directly, as an operator would.
func createKafkaTopic(t testing.TB, broker, topic string, partitions int, configs ...kafka.ConfigEntry) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(broker), Timeout: 10 * time.Second}
	resp, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: configs,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := resp.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// produce writes values to the tenant's topic name, spread over its
// partitions, acknowledged: an outside producer, straight to Kafka.
func (s *stack) produce(name string, values []string, batchBytes int64) {
	s.t.Helper()
	// Its own transport: kafka-go's default one caches metadata for 6 s, so
	// a topic created since the last produce would be unknown to it.
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr: kafka.TCP(s.broker), Topic: topic(name), Balancer: &kafka.RoundRobin{}, Transport: tr,
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll, BatchBytes: batchBytes,
	}
	defer w.Close()
	msgs := make([]kafka.Message, len(values))
	for i, v := range values {
		msgs[i] = kafka.Message{Value: []byte(v)}
	}
	for len(msgs) > 0 {
		n := min(len(msgs), 500)
		if err := w.WriteMessages(s.ctx(), msgs[:n]...); err != nil {
			s.t.Fatalf("produce to %s: %v", name, err)
		}
		msgs = msgs[n:]
	}
}

// readTopic reads every record currently in the tenant's topic name.
func (s *stack) readTopic(name string) []kafka.Message {
	s.t.Helper()
	return s.readKafkaTopic(topic(name))
}

// readKafkaTopic reads every record currently in a topic, by its Kafka name.
func (s *stack) readKafkaTopic(topic string) []kafka.Message {
	s.t.Helper()
	conn, err := kafka.DialContext(s.ctx(), "tcp", s.broker)
	if err != nil {
		s.t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		s.t.Fatalf("partitions of %s: %v", topic, err)
	}
	var out []kafka.Message
	for _, p := range parts {
		pc, err := kafka.DialLeader(s.ctx(), "tcp", s.broker, topic, p.ID)
		if err != nil {
			s.t.Fatal(err)
		}
		last, err := pc.ReadLastOffset()
		if err != nil {
			s.t.Fatal(err)
		}
		first, err := pc.ReadFirstOffset()
		if err != nil {
			s.t.Fatal(err)
		}
		if _, err := pc.Seek(first, kafka.SeekAbsolute); err != nil {
			s.t.Fatal(err)
		}
		for off := first; off < last; {
			// A batch per round trip: one fetch per message made polling
			// a topic of 10,000 records take seconds.
			_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
			batch := pc.ReadBatch(1, 16<<20)
			before := off
			for off < last {
				m, err := batch.ReadMessage()
				if err != nil {
					break
				}
				if m.Offset >= off {
					out = append(out, m)
					off = m.Offset + 1
				}
			}
			if err := batch.Close(); err != nil && off == before {
				s.t.Fatalf("read %s/%d at %d: %v", topic, p.ID, off, err)
			}
			if off == before {
				s.t.Fatalf("read %s/%d at %d: no progress", topic, p.ID, off)
			}
		}
		pc.Close()
	}
	return out
}

// waitNoLag waits until the binding's committed offset reached the end of
// every partition and returns the final per-partition positions.
func (s *stack) waitNoLag(binding string, wantEnd int64, timeout time.Duration) []wire.PartitionLag {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	var last wire.BindingStatus
	for {
		st, err := s.client.Status(s.ctx())
		if err == nil {
			for _, b := range st.Bindings {
				if b.ID != binding {
					continue
				}
				last = b
				var end, lag int64
				for _, p := range b.LagPartitions() {
					end += p.End
					lag += p.Lag
				}
				if b.LagError == "" && end == wantEnd && lag == 0 {
					return b.LagPartitions()
				}
			}
		}
		if time.Now().After(deadline) {
			var parts []string
			for _, p := range last.LagPartitions() {
				parts = append(parts, fmt.Sprintf("%d: end %d committed %d %s %s", p.Partition, p.End, p.Committed, p.Status, p.Reason))
			}
			s.t.Fatalf("binding %s still lagging after %v: %v (err %v)\nactivity %+v\ngroup %s: %s\n%s", binding, timeout, parts, err,
				last.Activity, last.GroupID, s.describeGroup(last.GroupID), s.hangReport(s.goroutines()))
		}
		time.Sleep(100 * time.Millisecond) // polling consumer progress
	}
}

// describeGroup is the broker's view of a consumer group: state, members
// and their partitions.
func (s *stack) describeGroup(group string) string {
	c := &kafka.Client{Addr: kafka.TCP(s.broker), Timeout: 10 * time.Second}
	resp, err := c.DescribeGroups(context.Background(), &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, g := range resp.Groups {
		out = append(out, fmt.Sprintf("state %s, error %v", g.GroupState, g.Error))
		for _, m := range g.Members {
			var ps []string
			for _, t := range m.MemberAssignments.Topics {
				ps = append(ps, fmt.Sprint(t.Topic, t.Partitions))
			}
			out = append(out, fmt.Sprintf("member %s (%s): %v", m.MemberID, m.ClientHost, ps))
		}
	}
	return strings.Join(out, "; ")
}
