// Command counter is an example function that keeps a counter in a state
// resource of its tenant (STATE_DIR, default /mnt/counter), shared by every
// instance: {"op":"incr"} adds one under an exclusive lock and returns
// the new value, {"op":"read"} returns it, {"op":"fill"} writes until the
// resource's quota stops it and reports how far it got.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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

func handle(ctx context.Context, req Request) (Response, error) {
	r := Response{LogStream: os.Getenv("AWS_LAMBDA_LOG_STREAM_NAME")}
	var err error
	switch req.Op {
	case "incr":
		r.Value, err = incr(ctx, filepath.Join(dir(), "n"))
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

// incr adds one to the number in path. It holds the lock path.lock.d,
// then opens, reads, rewrites and closes path, then lets go: the next
// holder, on any host, opens the file after this one closed it
// (close-to-open), and never before it holds the lock. The number is
// written at a fixed width, so no host's cached file size can cut a read
// short.
func incr(ctx context.Context, path string) (int64, error) {
	unlock, err := lock(ctx, path+".lock.d")
	if err != nil {
		return 0, err
	}
	n, err := rewrite(path)
	if uerr := unlock(); err == nil {
		err = uerr
	}
	return n, err
}

// lock takes the lock dir: creating a directory is exclusive on every
// store Ember keeps state on (a local file system; SeaweedFS decides it
// at the filer for every host), where flock across SeaweedFS mounts is
// not to be relied on (docs/configuration.md). It waits, backing off up
// to 50 ms, until the holder removes dir or ctx ends. A holder that dies
// between the two leaves the lock taken: remove dir to break it.
func lock(ctx context.Context, dir string) (unlock func() error, err error) {
	wait := 2 * time.Millisecond
	for {
		err := os.Mkdir(dir, 0o777)
		if err == nil {
			return func() error { return os.Remove(dir) }, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock %s still taken: %w", dir, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// rewrite adds one to the number in path and returns it.
func rewrite(path string) (int64, error) {
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
