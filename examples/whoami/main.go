// Command whoami is an example function that reports the identity and
// privileges it runs with, used to test container isolation.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
)

// Response describes the process.
type Response struct {
	UID          int               `json:"uid"`
	GID          int               `json:"gid"`
	Status       map[string]string `json:"status"` // CapEff, CapBnd, NoNewPrivs... from /proc/self/status
	TaskRoot     string            `json:"task_root"`
	TaskWritable bool              `json:"task_writable"`
	TaskWriteErr string            `json:"task_write_err,omitempty"`
	TmpWritable  bool              `json:"tmp_writable"`
	Cwd          string            `json:"cwd"`
	Env          map[string]string `json:"env"`
}

func handle(context.Context, json.RawMessage) (Response, error) {
	r := Response{UID: os.Getuid(), GID: os.Getgid(), Status: map[string]string{}, Env: map[string]string{}}
	if f, err := os.Open("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs" || k == "Uid" || k == "Gid") {
				r.Status[k] = strings.TrimSpace(v)
			}
		}
		f.Close()
	}
	r.TaskRoot = os.Getenv("LAMBDA_TASK_ROOT")
	if err := os.WriteFile(filepath.Join(r.TaskRoot, "probe"), []byte("x"), 0o644); err != nil {
		r.TaskWriteErr = err.Error()
	} else {
		r.TaskWritable = true
	}
	if err := os.WriteFile(filepath.Join(os.Getenv("HOME"), "probe"), []byte("x"), 0o644); err == nil {
		r.TmpWritable = true
	}
	r.Cwd, _ = os.Getwd()
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		r.Env[k] = v
	}
	return r, nil
}

func main() { lambda.Start(handle) }
