// Command counter is an example function that keeps a counter in a state
// resource of its tenant (STATE_DIR, default /mnt/counter), shared by every
// instance: {"op":"incr"} adds one under an exclusive flock and returns
// the new value, {"op":"read"} returns it, {"op":"fill"} writes until the
// resource's quota stops it and reports how far it got.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/aws/aws-lambda-go/lambda"
)

// Request is the payload.
type Request struct {
	Op string `json:"op"`
}

// Response is the result.
type Response struct {
	Value     int64  `json:"value"`
	Written   int64  `json:"written,omitempty"`
	Error     string `json:"error,omitempty"`
	LogStream string `json:"log_stream"`
}

func dir() string {
	if d := os.Getenv("STATE_DIR"); d != "" {
		return d
	}
	return "/mnt/counter"
}

func handle(_ context.Context, req Request) (Response, error) {
	r := Response{LogStream: os.Getenv("AWS_LAMBDA_LOG_STREAM_NAME")}
	var err error
	switch req.Op {
	case "incr":
		r.Value, err = incr(filepath.Join(dir(), "n"))
	case "read":
		b, rerr := os.ReadFile(filepath.Join(dir(), "n"))
		if rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return r, rerr
		}
		r.Value, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	case "fill":
		r.Written, err = fill(filepath.Join(dir(), "fill"))
		if err != nil {
			r.Error, err = err.Error(), nil
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	return r, err
}

// incr adds one to the number in path. It holds an exclusive flock on
// path.lock, then opens, reads and rewrites path and closes it before it
// lets go: the next holder, on any host, opens the file after this one's
// writes were closed (close-to-open), not before it waited. The number is
// written at a fixed width, so no host's cached file size can cut a read
// short.
func incr(path string) (int64, error) {
	lk, err := os.OpenFile(path+".lock", os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return 0, err
	}
	defer lk.Close()
	if err := syscall.Flock(int(lk.Fd()), syscall.LOCK_EX); err != nil {
		return 0, err
	}
	defer syscall.Flock(int(lk.Fd()), syscall.LOCK_UN)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	n++
	if _, err := f.WriteAt(fmt.Appendf(nil, "%020d", n), 0); err != nil {
		return 0, err
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return n, f.Close()
}

// fill writes 1 MiB blocks to path until an error, then removes it.
func fill(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	block := make([]byte, 1<<20)
	var n int64
	for n < 1<<34 {
		w, err := f.Write(block)
		n += int64(w)
		if err != nil {
			return n, err
		}
		if err := f.Sync(); err != nil {
			return n, err
		}
	}
	return n, nil
}

func main() { lambda.Start(handle) }
