package testenv

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Collector is a private OpenTelemetry Collector (deploy/otelcol, built by
// `deploy/setup.sh otelcol`) with one OTLP/HTTP logs receiver per
// CollectorService, each behind its own bearer token and writing what it
// accepts to its own file. It is stopped when the test ends.
type Collector struct {
	Services map[string]*CollectorService
	cmd      *exec.Cmd
	out      *lockedBuffer
}

// CollectorService is one receiver: a logging service as a tenant would run it.
type CollectorService struct {
	Name string
	// Endpoint is the URL logs are POSTed to (http://127.0.0.1:PORT/v1/logs).
	Endpoint string
	// Token is the bearer token the receiver accepts; anything else gets 401.
	Token string
	file  string
}

// CollectorBinary is the Collector's path (see Tool).
func CollectorBinary() string { return Tool("otelcol") }

// StartCollector starts a Collector with one receiver per name and waits
// until it accepts requests.
func StartCollector(t testing.TB, names ...string) *Collector {
	t.Helper()
	bin := CollectorBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the OpenTelemetry Collector is not built (run `make test-deps` or `deploy/setup.sh otelcol`): %v", err)
	}
	dir := t.TempDir()
	c := &Collector{Services: map[string]*CollectorService{}, out: &lockedBuffer{}}
	var ext, recv, exp, pipes, exts strings.Builder
	for _, n := range names {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		tok := make([]byte, 16)
		_, _ = rand.Read(tok)
		s := &CollectorService{Name: n, Endpoint: fmt.Sprintf("http://127.0.0.1:%d/v1/logs", port),
			Token: hex.EncodeToString(tok), file: filepath.Join(dir, n+".jsonl")}
		c.Services[n] = s
		fmt.Fprintf(&ext, "  bearertokenauth/%s:\n    scheme: Bearer\n    token: %q\n", n, s.Token)
		fmt.Fprintf(&recv, "  otlp/%s:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:%d\n        auth:\n          authenticator: bearertokenauth/%s\n", n, port, n)
		fmt.Fprintf(&exp, "  file/%s:\n    path: %q\n    flush_interval: 50ms\n", n, s.file)
		fmt.Fprintf(&pipes, "    logs/%s:\n      receivers: [otlp/%s]\n      exporters: [file/%s]\n", n, n, n)
		fmt.Fprintf(&exts, "bearertokenauth/%s, ", n)
	}
	cfg := fmt.Sprintf("extensions:\n%sreceivers:\n%sexporters:\n%sservice:\n  extensions: [%s]\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n%s",
		ext.String(), recv.String(), exp.String(), strings.TrimSuffix(exts.String(), ", "), pipes.String())
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "--config", path)
	ready := make(chan struct{})
	c.out.watch("Everything is ready", ready)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start the Collector: %v", err)
	}
	// The Collector stands in for a service on another machine: on these
	// 2 cores it must not take CPU from the path it receives logs from.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, c.cmd.Process.Pid, 19)
	exited := make(chan struct{}) // closed once the process is gone (a receive here must not leave Cleanup waiting)
	var waitErr error
	go func() { waitErr = c.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-exited
	})
	select {
	case <-ready:
	case <-exited:
		t.Fatalf("the Collector exited: %v\n%s", waitErr, c.out.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the Collector was not ready after 30s:\n%s", c.out.String())
	}
	return c
}

// LogRecord is one record a receiver accepted.
type LogRecord struct {
	Time     time.Time
	Body     string
	Severity string
	// Attrs and Resource are the record's and its resource's attributes,
	// every value as a string.
	Attrs, Resource map[string]string
}

// Records returns what the service's receiver has written so far.
func (s *CollectorService) Records() ([]LogRecord, error) {
	b, err := os.ReadFile(s.file)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []LogRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var doc otlpJSON
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			continue // a line being written: the next read has it whole
		}
		for _, rl := range doc.ResourceLogs {
			res := attrMap(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, r := range sl.LogRecords {
					ns, _ := strconv.ParseInt(r.TimeUnixNano, 10, 64)
					out = append(out, LogRecord{Time: time.Unix(0, ns), Body: r.Body.String(), Severity: r.SeverityText,
						Attrs: attrMap(r.Attributes), Resource: res})
				}
			}
		}
	}
	return out, sc.Err()
}

// otlpJSON is the part of OTLP's JSON encoding (what the file exporter
// writes) that tests read.
type otlpJSON struct {
	ResourceLogs []struct {
		Resource struct {
			Attributes []otlpAttr `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			LogRecords []struct {
				TimeUnixNano string     `json:"timeUnixNano"`
				SeverityText string     `json:"severityText"`
				Body         otlpValue  `json:"body"`
				Attributes   []otlpAttr `json:"attributes"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

type otlpAttr struct {
	Key   string    `json:"key"`
	Value otlpValue `json:"value"`
}

type otlpValue struct {
	StringValue *string  `json:"stringValue"`
	IntValue    *string  `json:"intValue"`
	DoubleValue *float64 `json:"doubleValue"`
	BoolValue   *bool    `json:"boolValue"`
}

func (v otlpValue) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return *v.IntValue
	case v.DoubleValue != nil:
		return strconv.FormatFloat(*v.DoubleValue, 'f', -1, 64)
	case v.BoolValue != nil:
		return strconv.FormatBool(*v.BoolValue)
	}
	return ""
}

func attrMap(as []otlpAttr) map[string]string {
	m := make(map[string]string, len(as))
	for _, a := range as {
		m[a.Key] = a.Value.String()
	}
	return m
}

// lockedBuffer collects a process's output and closes a channel when a
// line containing a marker appears.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	marker string
	seen   chan struct{}
}

func (l *lockedBuffer) watch(marker string, seen chan struct{}) { l.marker, l.seen = marker, seen }

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	if l.seen != nil && bytes.Contains(l.b.Bytes(), []byte(l.marker)) {
		close(l.seen)
		l.seen = nil
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
