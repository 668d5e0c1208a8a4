// Command caller is an example function that calls another function and
// waits for its result, through the Invoke API its runtime serves (Lambda's
// POST /2015-03-31/functions/{name}/invocations at AWS_LAMBDA_RUNTIME_API:
// what the AWS SDK's Lambda client sends when pointed there). Before the
// call it makes a random nonce and fills "mb" megabytes with a pattern
// drawn from it, and prints the nonce; after the call it checks the
// pattern and returns the nonce beside the call's result: the test that
// the caller resumed with its memory intact.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
)

// Request is the payload.
type Request struct {
	Function  string          `json:"function"`
	Qualifier string          `json:"qualifier,omitempty"`
	Payload   json.RawMessage `json:"payload,omitempty"`
	MB        int             `json:"mb,omitempty"`
}

// Response is the result.
type Response struct {
	Nonce         string          `json:"nonce"`
	MemoryIntact  bool            `json:"memory_intact"`
	CallStatus    int             `json:"call_status"`
	FunctionError string          `json:"function_error,omitempty"`
	Result        json.RawMessage `json:"result"`
	WaitedUS      int64           `json:"waited_us"`
	LogStream     string          `json:"log_stream"`
}

func handle(ctx context.Context, req Request) (Response, error) {
	var seed [16]byte
	_, _ = rand.Read(seed[:])
	nonce := hex.EncodeToString(seed[:])
	buf := fill(seed, req.MB<<20)
	sum := sha256.Sum256(buf)
	fmt.Printf("caller: nonce %s before calling %s\n", nonce, req.Function)

	u := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2015-03-31/functions/" + url.PathEscape(req.Function) + "/invocations"
	if req.Qualifier != "" {
		u += "?Qualifier=" + url.QueryEscape(req.Qualifier)
	}
	payload := req.Payload
	if len(payload) == 0 {
		payload = []byte("{}")
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(payload))
	if err != nil {
		return Response{}, err
	}
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return Response{}, fmt.Errorf("call %s: %w", req.Function, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("call %s: %w", req.Function, err)
	}
	after := sha256.Sum256(buf)
	return Response{
		Nonce: nonce, MemoryIntact: after == sum && bytes.Equal(buf, fill(seed, len(buf))),
		CallStatus: resp.StatusCode, FunctionError: resp.Header.Get("X-Amz-Function-Error"),
		Result: json.RawMessage(body), WaitedUS: time.Since(t0).Microseconds(),
		LogStream: os.Getenv("AWS_LAMBDA_LOG_STREAM_NAME"),
	}, nil
}

// fill is n bytes of a pattern drawn from seed.
func fill(seed [16]byte, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed[i%len(seed)] ^ byte(i>>12)
	}
	return b
}

func main() { lambda.Start(handle) }
