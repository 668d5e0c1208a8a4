// Command ember-shim is the first process of every function container,
// started by ember-init (see hostagent/shim). It imports little on purpose:
// every container start waits for its runtime to start.
package main

import (
	"fmt"
	"os"

	"github.com/ember-run/ember/hostagent/shim"
)

func main() {
	shim.RefuseOtherVersion() // an ember-init of another build
	if !shim.IsShim() {
		fmt.Fprintf(os.Stderr, "ember-shim: ember-init starts it (%s %s) inside a container\n", os.Args[0], shim.Arg)
		os.Exit(2)
	}
	shim.Run() // never returns
}
