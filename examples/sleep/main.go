// Command sleep is an example function that sleeps for {"ms": N}
// milliseconds, used to test timeouts.
package main

import (
	"context"
	"log"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

// Request is the payload.
type Request struct {
	MS int64 `json:"ms"`
}

// Response is the result.
type Response struct {
	SleptMS int64 `json:"slept_ms"`
}

func handle(_ context.Context, req Request) (Response, error) {
	log.Printf("sleep: sleeping %d ms", req.MS)
	time.Sleep(time.Duration(req.MS) * time.Millisecond)
	return Response{SleptMS: req.MS}, nil
}

func main() { lambda.Start(handle) }
