package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

// rieHot runs example under AWS's Lambda Runtime Interface Emulator (built
// by `deploy/setup.sh rie`; the bootstrap a plain process of the host, no
// container, no limits) and returns the times of n hot invokes after a
// first one that starts it: the reference for a hot invoke of the same
// function.
func rieHot(b *testing.B, example string, payload []byte, n int) []time.Duration {
	bin := testenv.Tool("aws-lambda-rie")
	if _, err := os.Stat(bin); err != nil {
		b.Fatalf("the Runtime Interface Emulator is not built (`deploy/setup.sh rie`, make bench does): %v", err)
	}
	dir := b.TempDir()
	if err := testenv.Example(example, dir); err != nil {
		b.Fatal(err)
	}
	addr := freeAddr(b)
	cmd := exec.Command(bin, "--runtime-interface-emulator-address", addr, filepath.Join(dir, "bootstrap"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "AWS_LAMBDA_FUNCTION_TIMEOUT=10", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	url := "http://" + addr + "/2015-03-31/functions/function/invocations"
	invoke := func() error {
		resp, err := http.Post(url, "application/json", bytes.NewReader(payload))
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", resp.Status, body)
		}
		return nil
	}
	// The first starts the bootstrap (polling a starting emulator).
	for deadline := time.Now().Add(30 * time.Second); ; {
		err := invoke()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("the emulator does not answer: %v\n%s", err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var d []time.Duration
	for range n {
		start := time.Now()
		if err := invoke(); err != nil {
			b.Fatalf("invoke through the emulator: %v", err)
		}
		d = append(d, time.Since(start))
	}
	return d
}
