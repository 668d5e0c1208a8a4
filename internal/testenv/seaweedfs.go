package testenv

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SeaweedFS is a private SeaweedFS cluster (master, volume server and
// filer in one `weed server` process, deploy/seaweedfs built by
// `deploy/setup.sh weed`): the networked store of state resources that
// several hosts' agents mount. It is stopped when the test ends.
type SeaweedFS struct {
	// Filer is host:port of the filer's HTTP listener (its gRPC listener
	// is that port + 10000), what agents take as --state-filer.
	Filer string
	dir   string
}

// WeedBinary is weed's path (see Tool).
func WeedBinary() string { return Tool("weed") }

// StartSeaweedFS starts a SeaweedFS cluster listening on ip and waits until
// its filer stores a file. Its ports are found free just before it starts;
// if another process takes one meanwhile ("address already in use"), it
// starts again on others, up to three times.
func StartSeaweedFS(t testing.TB, ip string) *SeaweedFS {
	t.Helper()
	bin := WeedBinary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("SeaweedFS is not built (run `make test-deps` or `deploy/setup.sh weed`): %v", err)
	}
	for try := 1; ; try++ {
		s, out, err := startWeed(t, bin, ip)
		if err == nil {
			return s
		}
		if try < 3 && strings.Contains(out, "address already in use") {
			t.Logf("SeaweedFS lost a port to another process, starting again: %v", err)
			continue
		}
		t.Fatalf("SeaweedFS: %v\n%s", err, TailLines(out, 30))
	}
}

// startWeed starts one `weed server` and waits for its filer; on failure
// the process is gone and its output returned.
func startWeed(t testing.TB, bin, ip string) (*SeaweedFS, string, error) {
	dir := t.TempDir()
	// Each of the three listens on a port and on that port + 10000 (gRPC).
	var ports [3]int
	for i := range ports {
		p, err := portPair(ip)
		if err != nil {
			return nil, "", err
		}
		ports[i] = p
	}
	s := &SeaweedFS{Filer: net.JoinHostPort(ip, strconv.Itoa(ports[2])), dir: dir}
	out := &lockedBuffer{}
	cmd := exec.Command(bin, "server", "-dir="+dir, "-ip="+ip, "-ip.bind="+ip,
		"-master.port="+strconv.Itoa(ports[0]), "-volume.port="+strconv.Itoa(ports[1]),
		"-filer", "-filer.port="+strconv.Itoa(ports[2]),
		// Small volumes, enough of them: each resource is a collection of
		// its own, and a collection grows several volumes at a time.
		"-master.volumeSizeLimitMB=64", "-volume.max=200",
		// A test's servers stop at once: nothing to drain.
		"-volume.preStopSeconds=0")
	// A fresh master holds back allocating volume ids for a while in case
	// it lost the state of an earlier run; a test's master has none.
	cmd.Env = append(os.Environ(), "WEED_MASTER_VOLUME_GROWTH_ALLOCATION_DEFERRAL=0s")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start: %w", err)
	}
	// It stands in for servers on other machines: on these 2 cores it must
	// not take CPU from the hosts it serves.
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, 10)
	exited := make(chan struct{}) // closed once the process is gone
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stop := func() {
		// Killed: its data goes with the test (a SIGTERM makes its filer
		// wait for 10 s).
		_ = cmd.Process.Kill()
		<-exited
	}
	// Ready when a file can be written through the filer: the master has a
	// volume server and the filer reaches both. Polling a starting server.
	url := "http://" + s.Filer + "/.ember-ready"
	for deadline := time.Now().Add(90 * time.Second); ; {
		err := putFile(url, []byte("ok"))
		if err == nil {
			break
		}
		select {
		case <-exited:
			return nil, out.String(), fmt.Errorf("exited: %v", waitErr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, out.String(), fmt.Errorf("the filer stores nothing after 90s (%v)", err)
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("SeaweedFS output:\n%s", TailLines(out.String(), 30))
		}
	})
	return s, "", nil
}

// Read returns the content of path on the filer.
func (s *SeaweedFS) Read(path string) ([]byte, error) {
	resp, err := http.Get("http://" + s.Filer + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return b, err
}

func putFile(url string, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	c := http.Client{Timeout: 10 * time.Second} // a server that dies mid-request
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT: %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// portPair finds a port p free on ip with p + 10000 free too.
func portPair(ip string) (int, error) {
	for range 100 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		if p+10000 > 65535 {
			l.Close()
			continue
		}
		l2, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(p+10000)))
		l.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free port pair on %s", ip)
}

// TailLines is the last n lines of s (a process's output, for a failure
// message).
func TailLines(s string, n int) string {
	b := []byte(s)
	for i, k := len(b)-1, 0; i >= 0; i-- {
		if b[i] == '\n' {
			if k++; k > n {
				return string(b[i+1:])
			}
		}
	}
	return s
}
