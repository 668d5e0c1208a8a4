// Command sleep is an example function that sleeps for {"ms": N}
// milliseconds (SLEEP_MS in its environment when the payload names none),
// used to test timeouts and waiting. With "stat": true it
// also reports where it ran (its log stream, which names the instance) and
// the size of its /tmp. With "lines": N it first writes N numbered lines
// of output, each naming "tag" (tests of logging services).
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

// Request is the payload.
type Request struct {
	MS    int64  `json:"ms"`
	Stat  bool   `json:"stat"`
	Lines int    `json:"lines"`
	Tag   string `json:"tag"`
}

// Response is the result.
type Response struct {
	SleptMS   int64  `json:"slept_ms"`
	LogStream string `json:"log_stream,omitempty"`
	TmpBytes  uint64 `json:"tmp_bytes,omitempty"`
}

func handle(_ context.Context, req Request) (Response, error) {
	if req.MS == 0 {
		req.MS, _ = strconv.ParseInt(os.Getenv("SLEEP_MS"), 10, 64)
	}
	for i := range req.Lines {
		fmt.Printf("%s line %d of %d\n", req.Tag, i+1, req.Lines)
	}
	log.Printf("sleep: sleeping %d ms", req.MS)
	time.Sleep(time.Duration(req.MS) * time.Millisecond)
	r := Response{SleptMS: req.MS}
	if req.Stat {
		r.LogStream = os.Getenv("AWS_LAMBDA_LOG_STREAM_NAME")
		var st syscall.Statfs_t
		if err := syscall.Statfs("/tmp", &st); err == nil {
			r.TmpBytes = st.Blocks * uint64(st.Bsize)
		}
	}
	return r, nil
}

func main() { lambda.Start(handle) }
