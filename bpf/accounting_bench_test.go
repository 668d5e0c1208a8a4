package bpf_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/ember-run/ember/hostagent/cgroup"
)

// BenchmarkCountedTraffic is what counting costs the kernel's network path:
// TCP round trips of 64 bytes between this process and a helper in a
// container cgroup with the programs attached, against one in a cgroup
// without, taken in alternating blocks (these machines are noisy). A
// round trip is two or more packets through the programs (request and
// reply, each counted out of one cgroup and into the other, plus ACKs). A
// warm invocation's Runtime API exchange is about two round trips.
//
//	go test -run '^$' -bench CountedTraffic ./bpf
func BenchmarkCountedTraffic(b *testing.B) {
	a := load(b)
	parent := parentCgroup(b)
	counted := newBox(b, a, parent, "counted")
	plainCg, err := cgroup.Create(parent, "plain", 0, cgroup.Limits{MemoryBytes: 256 << 20})
	if err != nil {
		b.Fatal(err)
	}
	plainCg.CloseFDs()
	b.Cleanup(func() { _ = plainCg.Remove() })
	plain := &box{cg: plainCg}

	conns := make([]net.Conn, 2)
	for i, bx := range []*box{plain, counted} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		p := bx.start(b, "echo:"+ln.Addr().String())
		p.release(b)
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
		b.Cleanup(func() { c.Close(); p.wait(b) })
	}
	msg, reply := make([]byte, 64), make([]byte, 64)
	trip := func(c net.Conn, n int) time.Duration {
		t0 := time.Now()
		for range n {
			if _, err := c.Write(msg); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, reply); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(t0)
	}
	trip(conns[0], 200) // both paths warm
	trip(conns[1], 200)
	const block = 500
	var plainT, countedT time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		plainT += trip(conns[0], block)
		countedT += trip(conns[1], block)
	}
	b.StopTimer()
	trips := float64((b.N + block - 1) / block * block)
	b.ReportMetric(float64(plainT.Nanoseconds())/trips, "ns/trip-plain")
	b.ReportMetric(float64(countedT.Nanoseconds())/trips, "ns/trip-counted")
	b.ReportMetric(float64(countedT-plainT)/trips, "ns/trip-cost")
	if c := counted.read(b); c.TxBytes < uint64(trips)*64 {
		b.Fatalf("counted %d bytes out, want at least %d", c.TxBytes, uint64(trips)*64)
	}
}
