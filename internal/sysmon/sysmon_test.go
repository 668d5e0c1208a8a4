package sysmon

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestSetSlack: this process's sysmon (its first thread after the main
// one) gets the slack; the main thread keeps its own.
func TestSetSlack(t *testing.T) {
	pid := os.Getpid()
	tid, err := Thread(pid)
	if err != nil {
		t.Fatal(err)
	}
	if tid <= pid {
		t.Fatalf("sysmon thread %d of process %d", tid, pid)
	}
	slack := func(tid int) int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timerslack_ns", tid))
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := slack(pid)
	if before == Slack {
		t.Fatalf("the main thread already has slack %d", Slack)
	}
	if err := SetSlack(pid, Slack); err != nil {
		t.Fatal(err)
	}
	if got := slack(tid); got != Slack {
		t.Errorf("sysmon thread %d: slack %d, want %d", tid, got, Slack)
	}
	if got := slack(pid); got != before {
		t.Errorf("main thread: slack %d, want %d as before", got, before)
	}
}

func TestThreadOfNoProcess(t *testing.T) {
	if _, err := Thread(-1); err == nil {
		t.Fatal("Thread(-1): no error")
	}
}
