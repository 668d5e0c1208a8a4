// Command hostile is an example function that attacks its own sandbox, used
// to test isolation: each probe tries something a function must not be
// able to do (or must be bounded in) and reports what happened.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

// Request picks a probe.
type Request struct {
	Probe string `json:"probe"`
	// Addrs are host:port targets (runtime_api, connect).
	Addrs []string `json:"addrs,omitempty"`
	// N sizes print (MB), fork (processes) and alloc (MB).
	N int `json:"n,omitempty"`
	// URL is fetched by get.
	URL string `json:"url,omitempty"`
}

// Response is what a probe found: one line per attempt.
type Response struct {
	Results []string `json:"results"`
}

func handle(_ context.Context, req Request) (Response, error) {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	switch req.Probe {
	case "procs": // every process it can see, and any environment it can read
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			switch {
			case err != nil:
				add("pid %d environ: %v", pid, errors.Unwrap(err))
			case strings.Contains(string(env), "SECRET="):
				add("pid %d environ: SECRET FOUND", pid)
			default:
				add("pid %d environ: readable", pid)
			}
		}
	case "code": // other versions' code under the instance's code mount
		ents, err := os.ReadDir("/ember/code")
		add("ls /ember/code: %d entries, %v", len(ents), err)
		for _, e := range ents {
			_, err := os.ReadFile(filepath.Join("/ember/code", e.Name(), "bootstrap"))
			add("read %s/bootstrap: %v", e.Name(), err)
		}
		ents, err = os.ReadDir("/ember/sock")
		add("ls /ember/sock: %d entries, %v", len(ents), err)
	case "fds": // descriptors inherited from the sandbox, written to if pipes
		ents, _ := os.ReadDir("/proc/self/fd")
		for _, e := range ents {
			fd, err := strconv.Atoi(e.Name())
			if err != nil || fd <= 2 {
				continue
			}
			target, _ := os.Readlink("/proc/self/fd/" + e.Name())
			if !strings.HasPrefix(target, "pipe:") {
				continue // the runtime's own epoll, eventfd and sockets
			}
			_, err = syscall.Write(fd, []byte(`{"exit":0}`+"\n"))
			add("fd %d -> %s: write %v", fd, target, err)
		}
	case "runtime_api": // take a sibling's next invocation
		for _, a := range req.Addrs {
			c := &http.Client{Timeout: time.Second}
			resp, err := c.Get("http://" + a + "/2018-06-01/runtime/invocation/next")
			if err != nil {
				add("%s: %v", a, err)
				continue
			}
			resp.Body.Close()
			add("%s: HTTP %d", a, resp.StatusCode)
		}
	case "connect":
		for _, a := range req.Addrs {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err != nil {
				add("%s: %v", a, err)
				continue
			}
			c.Close()
			add("%s: CONNECTED", a)
		}
	case "get":
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get(req.URL)
		if err != nil {
			add("get: %v", err)
			break
		}
		b := make([]byte, 256)
		n, _ := resp.Body.Read(b)
		resp.Body.Close()
		add("get: HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(b[:n])))
	case "gateway": // the default route's gateway, from /proc/net/route
		b, _ := os.ReadFile("/proc/net/route")
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 2 && f[1] == "00000000" {
				v, _ := strconv.ParseUint(f[2], 16, 32)
				add("%d.%d.%d.%d", byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
			}
		}
	case "unshare":
		add("unshare(CLONE_NEWUSER): %v", syscall.Unshare(syscall.CLONE_NEWUSER))
		add("unshare(CLONE_NEWNS): %v", syscall.Unshare(syscall.CLONE_NEWNS))
		add("mount tmpfs: %v", syscall.Mount("tmpfs", "/tmp", "tmpfs", 0, ""))
	case "print": // N MB to stdout
		line := []byte(strings.Repeat("x", 1023) + "\n")
		for i := 0; i < req.N*1024; i++ {
			if _, err := os.Stdout.Write(line); err != nil {
				add("write: %v", err)
				break
			}
		}
		add("printed %d MB", req.N)
	case "fork": // N processes at once
		var cmds []*exec.Cmd
		failed := 0
		var first error
		for i := 0; i < req.N; i++ {
			cmd := exec.Command("/bin/sleep", "5")
			if err := cmd.Start(); err != nil {
				failed++
				if first == nil {
					first = err
				}
				continue
			}
			cmds = append(cmds, cmd)
		}
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
		add("started %d, failed %d (first: %v)", len(cmds), failed, first)
	case "alloc": // N MB, touched
		var keep [][]byte
		for i := 0; i < req.N; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			keep = append(keep, b)
		}
		add("allocated %d MB", len(keep))
	default:
		return Response{}, fmt.Errorf("unknown probe %q", req.Probe)
	}
	return Response{Results: out}, nil
}

func main() { lambda.Start(handle) }
