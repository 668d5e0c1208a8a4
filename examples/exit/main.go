// Command exit is an example function that exits the process with status 3
// when the payload is {"exit": true}, and otherwise echoes the payload; used
// to test restarts.
package main

import (
	"context"
	"encoding/json"
	"log"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
)

func handle(_ context.Context, payload json.RawMessage) (json.RawMessage, error) {
	var req struct {
		Exit bool `json:"exit"`
	}
	_ = json.Unmarshal(payload, &req)
	if req.Exit {
		log.Print("exit: exiting with status 3")
		os.Exit(3)
	}
	return payload, nil
}

func main() { lambda.Start(handle) }
