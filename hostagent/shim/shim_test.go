package shim_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ember-run/ember/hostagent/shim"
	"github.com/ember-run/ember/internal/testenv"
)

// An ember-shim asked for another protocol version reports a sandbox error
// on its status pipe (ember-init then answers Ember.SandboxError) instead
// of failing like a function.
func TestShimRefusesOtherVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ember-shim")
	if err := testenv.Build("cmd/ember-shim", bin); err != nil {
		t.Fatal(err)
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer specW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "container-shim/0")
	cmd.ExtraFiles = []*os.File{specR, statusW} // fds 3 and 4
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	specR.Close()
	statusW.Close()
	var st shim.Status
	if err := json.NewDecoder(statusR).Decode(&st); err != nil {
		t.Fatalf("no status: %v", err)
	}
	if err := cmd.Wait(); err == nil {
		t.Error("the shim exited 0")
	}
	if st.Exit != -1 || st.Exec || !strings.Contains(st.Error, shim.Arg) || !strings.Contains(st.Error, "container-shim/0") {
		t.Fatalf("status %+v", st)
	}
}

// The shim's protocol is what Arg names: a change to Spec's or Status's
// fields must come with a new Arg, so that shims and ember-inits of
// different builds refuse each other (RefuseOtherVersion). This list is
// Arg's; update both together.
func TestProtocolFieldsMatchArg(t *testing.T) {
	fields := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		var names []string
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		return strings.Join(names, ",")
	}
	got := shim.Arg + " spec:" + fields(shim.Spec{}) + " status:" + fields(shim.Status{Signal: 1, Error: "x", Exec: true}) +
		" bind:" + fields(shim.Bind{})
	const want = "container-shim/1 spec:Bootstrap,CodeSrc,Env,GID,Hide,Hostname,ShmDir,ShmSize,State,TaskDir,TmpDir,TmpSize,UID" +
		" status:error,exec,exit,signal bind:dst,src"
	if got != want {
		t.Fatalf("the shim's protocol changed:\n got %s\nwant %s\n(a new Spec or Status field needs a new Arg)", got, want)
	}
}
