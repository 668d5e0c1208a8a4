package logship

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ember-run/ember/internal/testenv"
)

var res = &Resource{Tenant: "acme", Function: "orders", Version: "3", Instance: "i-1", Stream: "c-1"}

// TestShipsToCollector: every line and the REPORT reach the service whose
// token the shipper holds, with their attributes; the other service gets
// nothing.
func TestShipsToCollector(t *testing.T) {
	col := testenv.StartCollector(t, "a", "b")
	a := col.Services["a"]
	s, err := New(Config{Endpoint: a.Endpoint, Authorization: "Bearer " + a.Token, MaxBatch: 64})
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	for i := range n {
		if !s.Add(res, Record{Time: time.Now(), Body: fmt.Sprintf("line %d", i), InvocationID: "inv-1"}) {
			t.Fatalf("record %d dropped", i)
		}
	}
	s.Add(res, Record{Time: time.Now(), Body: "REPORT RequestId: inv-1", InvocationID: "inv-1",
		Report: &Report{DurationMs: 1.5, BilledDurationMs: 2, MemorySizeMB: 128, MaxMemoryUsedMB: 20, Status: "ok"}})
	var got []testenv.LogRecord
	testenv.Eventually(t, 20*time.Second, "all records at the collector", func() bool {
		got, err = a.Records()
		return err == nil && len(got) >= n+1
	})
	if len(got) != n+1 {
		t.Fatalf("collector got %d records, want %d", len(got), n+1)
	}
	seen := map[string]bool{}
	for _, r := range got {
		seen[r.Body] = true
		if r.Resource["faas.name"] != "orders" || r.Resource["faas.version"] != "3" || r.Resource["ember.tenant"] != "acme" ||
			r.Resource["faas.instance"] != "c-1" || r.Attrs["faas.invocation_id"] != "inv-1" {
			t.Fatalf("record %q: resource %v attrs %v", r.Body, r.Resource, r.Attrs)
		}
		if strings.HasPrefix(r.Body, "REPORT") {
			if r.Attrs["ember.record"] != KindReport || r.Attrs["ember.billed_duration_ms"] != "2" || r.Attrs["ember.max_memory_used_mb"] != "20" {
				t.Fatalf("report attrs %v", r.Attrs)
			}
		} else if r.Attrs["ember.record"] != KindFunction {
			t.Fatalf("line attrs %v", r.Attrs)
		}
	}
	for i := range n {
		if !seen[fmt.Sprintf("line %d", i)] {
			t.Fatalf("line %d missing", i)
		}
	}
	s.Close(context.Background())
	if st := s.Stats(); st.Sent != n+1 || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
	if other, _ := col.Services["b"].Records(); len(other) != 0 {
		t.Fatalf("service b got %d records", len(other))
	}
}

// TestWrongCredentialsFail: the service refuses a wrong token (401); the
// records are counted as failed, not retried, and the service stores none.
func TestWrongCredentialsFail(t *testing.T) {
	col := testenv.StartCollector(t, "a")
	a := col.Services["a"]
	s, err := New(Config{Endpoint: a.Endpoint, Authorization: "Bearer not-" + a.Token})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		s.Add(res, Record{Time: time.Now(), Body: fmt.Sprint(i)})
	}
	s.Close(context.Background())
	st := s.Stats()
	if st.Failed != 10 || st.Sent != 0 || !strings.Contains(st.LastError, "401") {
		t.Fatalf("stats %+v", st)
	}
	if strings.Contains(st.LastError, a.Token) {
		t.Fatal("the error shows the token")
	}
	if got, _ := a.Records(); len(got) != 0 {
		t.Fatalf("collector stored %d records", len(got))
	}
}

// TestServiceDownCostsNothing: with nothing listening, Add still returns at
// once; past the buffer's bound records are dropped and counted; Close with
// a deadline returns by it.
func TestServiceDownCostsNothing(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s, err := New(Config{Endpoint: "http://" + addr + "/v1/logs", MaxRecords: 100, Linger: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for i := range 10000 {
		if s.Add(res, Record{Time: time.Now(), Body: fmt.Sprint(i)}) {
			added++
		}
	}
	if added < 100 || added == 10000 {
		t.Fatalf("%d of 10000 added with a 100-record buffer", added)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.Close(ctx)
	st := s.Stats()
	if st.Dropped != int64(10000-added) || st.Failed != int64(added) || st.Sent != 0 {
		t.Fatalf("added %d, stats %+v", added, st)
	}
	if !strings.Contains(st.LastError, "refused") && !strings.Contains(st.LastError, "canceled") {
		t.Fatalf("last error %q", st.LastError)
	}
	if s.Add(res, Record{Body: "late"}) {
		t.Fatal("a closed shipper took a record")
	}
}

func TestNewRefusesBadEndpoints(t *testing.T) {
	for _, e := range []string{"", "ftp://x/v1/logs", "http:///v1/logs", "http://user:pw@host/v1/logs", "::"} {
		if _, err := New(Config{Endpoint: e}); err == nil {
			t.Errorf("endpoint %q accepted", e)
		}
	}
}
