// Command kafka-echo is an example function for a Kafka binding: it returns
// the decoded value of every record in the batch.
package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"log"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// Response is what the function returns.
type Response struct {
	Records int      `json:"records"`
	IDs     []string `json:"ids"`
	// Started is when the handler began (Unix nanoseconds): it orders
	// batches delivered to different containers.
	Started int64 `json:"started"`
}

// delay is an optional pause per batch (env EXAMPLE_DELAY_MS), to make the
// function look busy in demos and crash tests.
var delay = func() time.Duration {
	ms, _ := strconv.Atoi(os.Getenv("EXAMPLE_DELAY_MS"))
	return time.Duration(ms) * time.Millisecond
}()

// quiet (env EXAMPLE_QUIET=1) leaves out the log line per batch: a function
// that writes nothing, for benchmarks of Ember's own cost per invocation.
var quiet = os.Getenv("EXAMPLE_QUIET") == "1"

func handle(_ context.Context, ev events.KafkaEvent) (Response, error) {
	started := time.Now().UnixNano()
	time.Sleep(delay)
	// Records are grouped by "topic-partition"; keep a stable order.
	keys := make([]string, 0, len(ev.Records))
	for k := range ev.Records {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := Response{IDs: []string{}, Started: started}
	for _, k := range keys {
		for _, r := range ev.Records[k] {
			v, err := base64.StdEncoding.DecodeString(r.Value)
			if err != nil {
				return Response{}, fmt.Errorf("record %s/%d/%d: value is not base64: %w", r.Topic, r.Partition, r.Offset, err)
			}
			out.IDs = append(out.IDs, string(v))
			out.Records++
		}
	}
	if !quiet {
		log.Printf("kafka-echo: batch of %d records from %d partitions", out.Records, len(keys))
	}
	return out, nil
}

func main() { lambda.Start(handle) }
