package testenv

import (
	"os"
	"testing"
)

// OpenFDs counts this process's open fds whose /proc/self/fd link reads
// target (e.g. "anon_inode:bpf_link", "net:[4026532000]"): what a test
// checks to see that something was closed.
func OpenFDs(t testing.TB, target string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if s, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && s == target {
			n++
		}
	}
	return n
}
