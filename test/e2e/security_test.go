package e2e

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/engine/api/client"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/internal/netnstest"
	"github.com/ember-run/ember/internal/pki"
)

// TestPeerCodeNeedsClusterCertificate: emberd serves code to agents on
// other hosts and to its replicas only over mutual TLS with a certificate
// of its own authority.
func TestPeerCodeNeedsClusterCertificate(t *testing.T) {
	s := newStack(t, "m128=1")
	fn := s.deploy("echo", "kafka-echo", wire.FunctionConfig{MemoryMB: 128})
	want, err := os.ReadFile(zips["kafka-echo"])
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.dir, "pki")
	ca, _, err := pki.LoadOrCreateAuthority(dir)
	if err != nil {
		t.Fatal(err)
	}
	agentCert, err := ca.Issue(pki.RoleAgent, "remote-agent")
	if err != nil {
		t.Fatal(err)
	}
	emberdCert, _ := ca.Issue(pki.RoleEmberd, "another-emberd")
	foreign, _ := pki.NewPair("remote-agent")
	fetch := func(cert *tls.Certificate) ([]byte, error) {
		cfg := pki.ClientConfig(tls.Certificate{}, ca.Pool(), pki.RoleEmberd, "")
		cfg.Certificates = nil
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get("https://" + s.peer + "/v1/code/" + fn.CodeDigest)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("peer answered %s", resp.Status)
		}
		return b, err
	}
	// Agents fetch packages; other emberd replicas replicate them.
	for name, cert := range map[string]*tls.Certificate{"an agent": &agentCert, "another emberd": &emberdCert} {
		got, err := fetch(cert)
		if err != nil {
			t.Fatalf("%s of the authority: %v", name, err)
		}
		if sha256.Sum256(got) != sha256.Sum256(want) {
			t.Fatalf("%s fetched package %s, which differs from the deployed one", name, hex.EncodeToString(got[:8]))
		}
	}
	for name, cert := range map[string]*tls.Certificate{
		"no certificate":    nil,
		"another authority": &foreign.Agent,
	} {
		if _, err := fetch(cert); err == nil {
			t.Errorf("%s: code was served", name)
		}
	}
}

// probe invokes the hostile function's probe and returns its
// result lines.
func (s *stack) probe(fn string, req map[string]any) (client.InvokeResult, []string) {
	s.t.Helper()
	b, _ := json.Marshal(req)
	res, err := s.client.Invoke(s.ctx(), fn, "", b)
	if err != nil {
		s.t.Fatalf("probe %v: %v", req, err)
	}
	var out struct {
		Results []string `json:"results"`
	}
	if res.OK() {
		if err := json.Unmarshal(res.Payload, &out); err != nil {
			s.t.Fatalf("probe %v answered %s", req, res.Payload)
		}
	}
	return res, out.Results
}

// TestHostileFunction runs a hostile function beside a victim of the same
// tenant on one instance. Every attack fails (or is bounded) and the
// victim keeps answering correctly throughout.
func TestHostileFunction(t *testing.T) {
	s := newStack(t, "m256=1", "--max-instances", "1")
	outsideIP := fmt.Sprintf("198.51.100.%d", 10+int(stacks.Load())%200)
	outside := netnstest.NewOutside(t, fmt.Sprintf("embo%d", os.Getpid()%100000), outsideIP+"/24")
	outside.Serve(t, outsideIP+":8080", "outside")
	// A host service bound to every address, as a careless daemon would.
	hostLn, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostLn.Close()
	go func() {
		for {
			c, err := hostLn.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	const secret = "hunter2-victim-secret"
	s.deploy("victim", "whoami", wire.FunctionConfig{MemoryMB: 256, TimeoutMs: 10000, Env: map[string]string{"SECRET": secret}})
	var victim struct {
		UID int               `json:"uid"`
		Env map[string]string `json:"env"`
	}
	checkVictim := func(when string) {
		t.Helper()
		res, err := s.client.Invoke(s.ctx(), "victim", "", []byte(`{}`))
		if err != nil || !res.OK() {
			t.Fatalf("victim %s: %v %s %s", when, err, res.Status, res.Payload)
		}
		if err := json.Unmarshal(res.Payload, &victim); err != nil || victim.Env["SECRET"] != secret {
			t.Fatalf("victim %s answered %s", when, res.Payload)
		}
	}
	checkVictim("before")
	// The victim's first container took the network namespace its
	// instance set aside and connected at boot (no CNI on its start).
	if b, _ := os.ReadFile(filepath.Join(s.dir, "emberd-0.log")); !regexp.MustCompile(`"function":"victim"[^\n]*"spare_netns":true`).Match(b) {
		t.Errorf("the victim's container did not start in a network namespace set aside")
	}
	// The instances made that namespace as they booted (the agent, in the
	// instance's user namespace) and ember-init adopted it.
	if b, _ := os.ReadFile(filepath.Join(s.dir, "emberd-0.log")); !regexp.MustCompile(`"netns_early":[0-9.]*[1-9][^\n]*"instance ready in the warming pool"`).Match(b) ||
		bytes.Contains(b, []byte("a network namespace made while the instance started")) {
		t.Errorf("no instance booted with its first network namespace made early, or one could not be adopted")
	}
	victimAPI := victim.Env["AWS_LAMBDA_RUNTIME_API"]
	s.deploy("hostile", "hostile", wire.FunctionConfig{MemoryMB: 256, TimeoutMs: 60000})

	lines := func(req map[string]any) string {
		t.Helper()
		res, out := s.probe("hostile", req)
		if !res.OK() {
			t.Fatalf("probe %v: %s %s %s", req, res.Status, res.ErrorType, res.Payload)
		}
		t.Logf("%v:\n  %s", req["probe"], strings.Join(out, "\n  "))
		return strings.Join(out, "\n")
	}
	// It runs beside the victim, as another uid, and sees nothing of it.
	if got := lines(map[string]any{"probe": "procs"}); strings.Contains(got, "SECRET FOUND") {
		t.Errorf("the hostile function read the victim's environment:\n%s", got)
	}
	if got := lines(map[string]any{"probe": "code"}); !strings.Contains(got, "ls /ember/code: 0 entries") || !strings.Contains(got, "ls /ember/sock: 0 entries") {
		t.Errorf("the instance's code or socket directory is visible:\n%s", got)
	}
	// Nothing of the sandbox's plumbing is inherited: no pipe but
	// stdout and stderr (a shim's status pipe would let it forge its exit).
	if got := lines(map[string]any{"probe": "fds"}); strings.Contains(got, "pipe") {
		t.Errorf("the function inherited pipes beside its output:\n%s", got)
	}
	if got := lines(map[string]any{"probe": "runtime_api", "addrs": []string{victimAPI}}); strings.Contains(got, "HTTP") {
		t.Errorf("the victim's Runtime API answered the hostile function:\n%s", got)
	}
	if got := lines(map[string]any{"probe": "unshare"}); strings.Count(got, "operation not permitted") != 3 {
		t.Errorf("namespaces or mounts were allowed:\n%s", got)
	}
	gw := strings.TrimSpace(lines(map[string]any{"probe": "gateway"}))
	if net.ParseIP(gw) == nil {
		t.Fatalf("no default gateway (no egress network?): %q", gw)
	}
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	var targets []string
	for _, a := range []string{s.redis, s.api, s.agent, s.broker, s.peer, hostLn.Addr().String()} {
		targets = append(targets, net.JoinHostPort(gw, port(a)), net.JoinHostPort("127.0.0.1", port(a)))
	}
	targets = append(targets, "169.254.169.254:80")
	if got := lines(map[string]any{"probe": "connect", "addrs": targets}); strings.Contains(got, "CONNECTED") {
		t.Errorf("the hostile function reached the host:\n%s", got)
	}
	if got := lines(map[string]any{"probe": "get", "url": "http://" + outsideIP + ":8080/"}); !strings.Contains(got, "HTTP 200 outside") {
		t.Errorf("egress to the outside failed:\n%s", got)
	}
	checkVictim("after the probes")

	// 200 MB of output: the invocation completes, the output is truncated
	// (and the caller told), and the instance's log files stay bounded.
	res, _ := s.probe("hostile", map[string]any{"probe": "print", "n": 200})
	if !res.OK() || res.LogTruncatedBytes < 190<<20 || !strings.Contains(string(res.LogTail), "were dropped") {
		t.Errorf("200 MB print: %s, truncated %d, tail %q", res.Status, res.LogTruncatedBytes, res.LogTail)
	}
	var logBytes int64
	for _, p := range logFiles(s.dir) {
		if fi, err := os.Stat(p); err == nil {
			logBytes += fi.Size()
		}
	}
	if logBytes > 60<<20 {
		t.Errorf("instance logs hold %d bytes after a 200 MB print", logBytes)
	}
	// 5,000 processes: the container's pids limit refuses most. The
	// function reports how many failed, or, when the limit also refused
	// its Go runtime a thread, crashes saying so: on the first line of the
	// runtime's dump, which the goroutine stacks after it can push out of
	// the 4 KiB log tail, so the instance's log files are read too.
	const noThread = "failed to create new OS thread"
	fork, out := s.probe("hostile", map[string]any{"probe": "fork", "n": 5000})
	switch {
	case fork.OK():
		if got := strings.Join(out, "\n"); !regexp.MustCompile(`failed [1-9]`).MatchString(got) {
			t.Errorf("5,000 forks all succeeded:\n%s", got)
		}
	case fork.Status == "crashed" && (strings.Contains(string(fork.LogTail), noThread) || logsContain(s.dir, noThread)):
		t.Logf("fork: the pids limit refused the runtime a thread: %s", fork.ErrorType)
	default:
		t.Errorf("fork probe: %s %s %s\n%s", fork.Status, fork.ErrorType, fork.Payload, fork.LogTail)
	}
	checkVictim("after the print and the forks")
	// 2 GB of memory in a 256 MB function: killed, and reported as such.
	res, _ = s.probe("hostile", map[string]any{"probe": "alloc", "n": 2048})
	if res.Status != "crashed" || res.ErrorType != "Runtime.OutOfMemory" {
		t.Errorf("2 GB allocation: %s %s %s", res.Status, res.ErrorType, res.Payload)
	}
	checkVictim("after the out-of-memory kill")

	// Without a network the function reaches nothing.
	s.deploy("hostile", "hostile", wire.FunctionConfig{MemoryMB: 256, TimeoutMs: 60000, Network: "none"})
	if got := lines(map[string]any{"probe": "get", "url": "http://" + outsideIP + ":8080/"}); strings.Contains(got, "HTTP 200") {
		t.Errorf("network none reached the outside:\n%s", got)
	}
	if gw := strings.TrimSpace(lines(map[string]any{"probe": "gateway"})); gw != "" {
		t.Errorf("network none has a default route via %s", gw)
	}
	checkVictim("at the end")

	// Deleting the function stops its container on the instance: only
	// the victim's is left.
	if n := s.containerCgroups(); n != 2 {
		t.Fatalf("%d container cgroups on the instance before the delete, want 2", n)
	}
	if err := s.client.DeleteFunction(s.ctx(), "hostile"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); s.containerCgroups() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("%d container cgroups 20 s after the delete, want the victim's only", s.containerCgroups())
		}
		time.Sleep(50 * time.Millisecond) // observing the agent's asynchronous stop
	}
	checkVictim("after the delete")
}

// containerCgroups counts the container cgroups (cgroup2) of the stack's
// instances.
func (s *stack) containerCgroups() int {
	insts, _ := os.ReadDir(filepath.Join(s.dir, "agent", "instances"))
	n := 0
	for _, in := range insts {
		ents, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup/unified/ember", in.Name()))
		for _, e := range ents {
			if e.IsDir() {
				n++
			}
		}
	}
	return n
}

// logFiles lists the log files of every instance under an agent's state
// directory (ember-init's own and the functions').
func logFiles(dir string) []string {
	var paths []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(p, "/log/") && !fi.IsDir() {
			paths = append(paths, p)
		}
		return nil
	})
	return paths
}

// logsContain reports whether any instance log under dir holds text.
func logsContain(dir, text string) bool {
	for _, p := range logFiles(dir) {
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), text) {
			return true
		}
	}
	return false
}
