package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/internal/pki"
	"github.com/ember-run/ember/internal/testenv"
)

// cluster is Ember on several hosts of this one machine: each host is a
// network namespace with its own address on a bridge the harness creates,
// its own containerd, state directory and ember-agent (started with
// nsenter into the host's network namespace only); one emberd (no agent of its own) runs in the machine's
// namespace with its API on loopback. Redis, the embedded broker and
// emberd's peer listener (code for the agents) listen on the bridge's
// address, which every host reaches.
type cluster struct {
	t       testing.TB
	n       int
	bridge  string
	gateway string // the bridge's address
	redis   *testenv.RedisServer
	pool    *pool.Store // the pool state, read as a scheduler would
	pkiDir  string
	peer    string // emberd's peer listener, gateway:port
	hosts   []*host
	ember   *stack
	state   *testenv.SeaweedFS // the hosts' state store, if asked for
}

// clusterOpts are a cluster's settings beyond its hosts.
type clusterOpts struct {
	// stateStore: a SeaweedFS cluster on the bridge holds every host's
	// state resources (ember-agent --state-filer).
	stateStore bool
}

// host is one host of a cluster.
type host struct {
	id, ns, addr, dir string
	ctrd              *testenv.ContainerdDaemon
	cmd               *exec.Cmd
	exited            chan struct{} // closed when the agent exited
	err               error         // how, once exited is closed
}

// hostSpec says how one host's agent runs: its warming pool and any other
// ember-agent flags (capacity, ...).
type hostSpec struct {
	pool  string
	extra []string
}

var clusters atomic.Int32

// run runs a command and fails the test with its output if it fails.
func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// newCluster starts a cluster of len(specs) hosts, then emberd.
func newCluster(t testing.TB, specs ...hostSpec) *cluster {
	t.Helper()
	return newClusterWith(t, clusterOpts{}, specs...)
}

// newClusterWith starts a cluster with opts.
func newClusterWith(t testing.TB, opts clusterOpts, specs ...hostSpec) *cluster {
	t.Helper()
	n := int(clusters.Add(1))
	c := &cluster{t: t, n: n, bridge: fmt.Sprintf("emhb%d", n), gateway: fmt.Sprintf("10.231.%d.1", n)}
	// A run killed by its timeout leaves its bridge, namespaces and veths
	// behind (names are per process, from 1): take them away first.
	_ = exec.Command("ip", "link", "del", c.bridge).Run()
	run(t, "ip", "link", "add", c.bridge, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", c.bridge).Run() })
	run(t, "ip", "addr", "add", c.gateway+"/24", "dev", c.bridge)
	run(t, "ip", "link", "set", c.bridge, "up")
	c.redis = testenv.StartRedisOn(t, c.gateway)
	if opts.stateStore {
		c.state = testenv.StartSeaweedFS(t, c.gateway)
	}
	rdb := redis.NewClient(&redis.Options{Addr: c.redis.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	ps, err := pool.New(rdb)
	if err != nil {
		t.Fatal(err)
	}
	c.pool = ps
	dir, err := os.MkdirTemp("", "ember-e2e-cluster-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // runc mounts from inside user namespaces
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c.pkiDir = filepath.Join(dir, "pki")
	ca, _, err := pki.LoadOrCreateAuthority(c.pkiDir)
	if err != nil {
		t.Fatal(err)
	}
	c.peer = freeAddrOn(t, c.gateway)
	for i, spec := range specs {
		c.hosts = append(c.hosts, c.startHost(ca, filepath.Join(dir, fmt.Sprintf("host%d", i)), i, spec))
	}
	// emberd's embedded broker on the bridge, where the hosts reach it (a
	// new port if the first is taken by the time emberd binds it).
	s := prepareStack(t, c.redis.Addr, "", "--agent=false", "--pki-dir", c.pkiDir, "--peer-listen", c.peer)
	s.ownBroker, s.brokerIP, s.broker = true, c.gateway, freeAddrOn(t, c.gateway)
	s.start()
	t.Cleanup(s.stop)
	c.ember = s
	c.ember.client = c.ember.tenantClient(tenant)
	return c
}

// startHost makes host i: its namespace and link to the bridge, its
// containerd and agent.
func (c *cluster) startHost(ca *pki.Authority, dir string, i int, spec hostSpec) *host {
	t := c.t
	t.Helper()
	h := &host{id: fmt.Sprintf("c%d-host%d", c.n, i), ns: fmt.Sprintf("emh%d-%d", c.n, i),
		addr: fmt.Sprintf("10.231.%d.%d", c.n, 10+i), dir: dir, exited: make(chan struct{})}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = exec.Command("ip", "netns", "del", h.ns).Run() // a killed run's (see newClusterWith)
	run(t, "ip", "netns", "add", h.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", h.ns).Run() })
	outer, inner := fmt.Sprintf("vh%d-%d", c.n, i), fmt.Sprintf("vn%d-%d", c.n, i)
	_ = exec.Command("ip", "link", "del", outer).Run()
	run(t, "ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
	run(t, "ip", "link", "set", inner, "netns", h.ns)
	run(t, "ip", "link", "set", outer, "master", c.bridge, "up")
	for _, args := range [][]string{
		{"addr", "add", h.addr + "/24", "dev", inner}, {"link", "set", inner, "up"}, {"link", "set", "lo", "up"},
		{"route", "add", "default", "via", c.gateway},
	} {
		run(t, "ip", append([]string{"-n", h.ns}, args...)...)
	}
	var err error
	if h.ctrd, err = testenv.StartContainerdIn(h.ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.ctrd.Close() })
	pkiDir := filepath.Join(dir, "pki")
	if _, err := ca.EnsureIssued(pkiDir, pki.RoleAgent, h.id); err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort(h.addr, "7947")
	args := append([]string{"--net=/run/netns/" + h.ns, filepath.Join(binDir, "ember-agent"),
		"--agent-id", h.id, "--listen", listen, "--redis", net.JoinHostPort(c.gateway, strconv.Itoa(c.redis.Port())),
		"--code-url", "https://" + c.peer, "--pki-dir", pkiDir,
		"--containerd", h.ctrd.Address, "--namespace", h.ctrd.Namespace, "--state-dir", filepath.Join(dir, "agent"),
		"--init-binary", filepath.Join(binDir, "ember-init"), "--pool", spec.pool, "--metrics-addr", "",
		// Agents share the kernel: host uid ranges of their own.
		"--uid-base", strconv.Itoa(3_000_000_000 + (c.n*8+i)*40*65536), "--subnet", fmt.Sprintf("10.232.%d.0/24", i),
		"--log-format", "json", "--log-level", logLevel, "--keep-instances=false",
	}, spec.extra...)
	if c.state != nil {
		args = append(args, "--state-filer", c.state.Filer, "--weed", testenv.WeedBinary())
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command("nsenter", args...)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.err = h.cmd.Wait(); logf.Close(); close(h.exited) }()
	t.Cleanup(func() {
		_ = h.cmd.Process.Signal(os.Interrupt)
		select {
		case <-h.exited:
		case <-time.After(30 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			t.Logf("agent %s log:\n%s", h.id, testenv.TailLines(string(b), 30))
		}
	})
	// The agent is up when its warming pool is in Redis.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		insts, _ := c.pool.Instances(context.Background(), h.id)
		if len(insts) > 0 {
			return h
		}
		select {
		case <-h.exited:
			b, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			t.Fatalf("agent %s exited: %v\n%s", h.id, h.err, testenv.TailLines(string(b), 30))
		case <-time.After(50 * time.Millisecond): // polling a starting agent
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s has no instance in Redis", h.id)
		}
	}
}

// instancesOf lists the instance ids a host's agent has in Redis.
func (c *cluster) instancesOf(h *host) map[string]bool {
	c.t.Helper()
	insts, err := c.pool.Instances(context.Background(), h.id)
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]bool{}
	for _, in := range insts {
		out[in.ID] = true
	}
	return out
}

// TestMultiHostPlacement: two hosts, one too small to ever hold a 3008 MB
// sub-pool instance. The sub-pool's instance starts on the big host (the
// placement's filters, then the host's own capacity check), the function's
// code reaches that host over emberd's peer listener across namespaces,
// and a fixed-class function of another tenant runs too.
func TestMultiHostPlacement(t *testing.T) {
	c := newCluster(t,
		hostSpec{pool: "m128=1", extra: []string{"--capacity-memory", "2048"}},
		hostSpec{pool: "m128=1", extra: []string{"--capacity-memory", "8192"}})
	s := c.ember
	st, err := s.admin.Status(s.ctx())
	if err != nil || len(st.Agents) != 2 {
		t.Fatalf("agents: %+v, %v", st.Agents, err)
	}
	if _, err := s.admin.PutSubPool(s.ctx(), wireSubPool("big", tenant, 3008, 0.5, 2)); err != nil {
		t.Fatal(err)
	}
	s.deploy("sleepy", "sleep", wireFunction(3008))
	for range 3 {
		r, _, _ := invokeSleep(t, s, s.client, "sleepy", 1)
		if id := instanceOf(r); !c.instancesOf(c.hosts[1])[id] {
			t.Fatalf("the 3008 MB instance %s is not on the big host (small host has %v)", id, c.instancesOf(c.hosts[0]))
		}
	}
	other := s.tenantClient("other")
	s.deployAs(other, "small", "sleep", wireFunction(128))
	r, _, _ := invokeSleep(t, s, other, "small", 1)
	id := instanceOf(r)
	if !c.instancesOf(c.hosts[0])[id] && !c.instancesOf(c.hosts[1])[id] {
		t.Fatalf("instance %s is on neither host", id)
	}
}

// BenchmarkHotAcrossHosts: median of 200 hot invokes through the API when
// the agent is on another host (its own network namespace, reached over
// the cluster's bridge with mutual TLS) and when it runs inside emberd, in
// the same run.
func BenchmarkHotAcrossHosts(b *testing.B) {
	hot := func(s *stack) time.Duration {
		s.deploy("sleepy", "sleep", wireFunction(512))
		var d []time.Duration
		for i := range 201 {
			start := time.Now()
			r, err := s.client.Invoke(s.ctx(), "sleepy", "", []byte(`{"ms":0}`))
			if err != nil || !r.OK() {
				b.Fatalf("invoke: %v %+v", err, r)
			}
			if i > 0 { // the first starts the container
				d = append(d, time.Since(start))
			}
		}
		return median(d)
	}
	remote := hot(newCluster(b, hostSpec{pool: "m512=1"}).ember)
	local := hot(newStack(b, "m512=1"))
	report(b, "hot invoke, agent on another host, median of 200", ms(remote), "ms-hot-remote")
	report(b, "hot invoke, agent in emberd, median of 200", ms(local), "ms-hot-local")
	report(b, "ratio other host / in emberd", float64(remote)/float64(local), "x-remote")
}
