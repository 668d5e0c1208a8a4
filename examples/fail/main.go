// Command fail is an example function whose handler always fails.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log"

	"github.com/aws/aws-lambda-go/lambda"
)

func handle(context.Context, json.RawMessage) (string, error) {
	log.Print("fail: about to fail")
	return "", errors.New("boom")
}

func main() { lambda.Start(handle) }
