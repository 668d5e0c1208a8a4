package testenv

import (
	"os"
	"path/filepath"
	"runtime"
)

// Tool is the path of a tool deploy/setup.sh builds and links (otelcol,
// weed, aws-lambda-rie): $EMBER_STATE/tools/NAME, or the checkout's
// .ember/tools/NAME.
func Tool(name string) string {
	state := os.Getenv("EMBER_STATE")
	if state == "" {
		_, here, _, _ := runtime.Caller(0)
		state = filepath.Join(filepath.Dir(here), "..", "..", ".ember")
	}
	return filepath.Join(state, "tools", name)
}
