// Command kafka-picky is an example function for a Kafka binding that
// fails the records that ask for it, to show (and test) a binding's error
// controls. A record whose value starts with "fail" fails: the whole batch
// with an error, or, with PARTIAL=1 in the environment, only that record,
// reported in a partial batch response (batchItemFailures, for a binding
// with report_batch_item_failures). A record "big:<n>" makes the response
// n bytes long. It returns the values it handled and when it started.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// Response is what the function returns.
type Response struct {
	IDs     []string `json:"ids"`
	Started int64    `json:"started"`
	// Padding makes the response as large as a "big:<n>" record asks.
	Padding string `json:"padding,omitempty"`
	// BatchItemFailures names the failed records (with PARTIAL=1).
	BatchItemFailures []Failure `json:"batchItemFailures,omitempty"`
}

// Failure is one entry of a partial batch response, in Lambda's Kafka shape.
type Failure struct {
	ItemIdentifier Item `json:"itemIdentifier"`
}

// Item names a record: its "<topic>-<partition>" and offset.
type Item struct {
	Partition string `json:"partition"`
	Offset    int64  `json:"offset"`
}

var partial = os.Getenv("PARTIAL") == "1"

func handle(_ context.Context, ev events.KafkaEvent) (Response, error) {
	out := Response{IDs: []string{}, Started: time.Now().UnixNano()}
	keys := make([]string, 0, len(ev.Records))
	for k := range ev.Records {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, r := range ev.Records[k] {
			b, err := base64.StdEncoding.DecodeString(r.Value)
			if err != nil {
				return Response{}, fmt.Errorf("record %s/%d: value is not base64: %w", k, r.Offset, err)
			}
			v := string(b)
			if strings.HasPrefix(v, "fail") {
				if !partial {
					return Response{}, errors.New("record " + v + " fails")
				}
				out.BatchItemFailures = append(out.BatchItemFailures, Failure{Item{Partition: k, Offset: r.Offset}})
				continue
			}
			if n, ok := strings.CutPrefix(v, "big:"); ok {
				size, _ := strconv.Atoi(n)
				out.Padding = strings.Repeat("x", max(0, size))
			}
			if len(v) > 64 {
				v = v[:64]
			}
			out.IDs = append(out.IDs, v)
		}
	}
	return out, nil
}

func main() { lambda.Start(handle) }
