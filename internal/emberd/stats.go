package emberd

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ember-run/ember/consumers"
	"github.com/ember-run/ember/engine/api"
	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/invoke"
)

// latencyWindow is how many recent invocations a binding's latency
// percentiles are computed over.
const latencyWindow = 4096

// stats is a consumers.Observer that keeps per-binding summaries.
type stats struct {
	mu sync.Mutex
	by map[string]*bindingStats
}

type bindingStats struct {
	sum          wire.Activity
	eventToStart ring
	fetchToStart ring
}

var (
	_ consumers.Observer = (*stats)(nil)
	_ api.ActivityReader = (*stats)(nil)
)

func newStats() *stats { return &stats{by: map[string]*bindingStats{}} }

func (s *stats) InvocationDone(r consumers.InvocationReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.by[r.Binding]
	if b == nil {
		b = &bindingStats{}
		s.by[r.Binding] = b
	}
	if r.Err != nil {
		b.sum.PlatformErrors++
		return
	}
	b.sum.Invocations++
	b.sum.Records += int64(r.Records)
	if !r.Result.OK() {
		b.sum.FunctionErrors++
	}
	switch r.Result.Start {
	case invoke.StartHot:
		b.sum.HotStarts++
	case invoke.StartPoolHit:
		b.sum.PoolHitStarts++
	case invoke.StartCold:
		b.sum.ColdStarts++
	}
	if hs := r.Result.HandlerStart; !hs.IsZero() {
		if !r.FirstEventTime.IsZero() {
			b.eventToStart.add(hs.Sub(r.FirstEventTime))
		}
		if !r.FirstFetched.IsZero() {
			b.fetchToStart.add(hs.Sub(r.FirstFetched))
		}
	}
}

// Activity implements api.ActivityReader.
func (s *stats) Activity(binding string) (wire.Activity, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.by[binding]
	if b == nil {
		return wire.Activity{}, false
	}
	out := b.sum
	out.Window = len(b.eventToStart.d)
	out.EventToStartP50Ms, out.EventToStartP99Ms = b.eventToStart.percentiles(0.50, 0.99)
	out.FetchToStartP50Ms, out.FetchToStartP99Ms = b.fetchToStart.percentiles(0.50, 0.99)
	out.EventToStart = b.eventToStart.histogram()
	return out, true
}

// histogramMs are the upper bounds of the latency histogram's buckets.
var histogramMs = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}

// histogram counts the window's durations per bucket of histogramMs, the
// last bucket (LeMs 0) holding those above every bound.
func (r *ring) histogram() []wire.LatencyBucket {
	if len(r.d) == 0 {
		return nil
	}
	out := make([]wire.LatencyBucket, len(histogramMs)+1)
	for i, le := range histogramMs {
		out[i].LeMs = le
	}
	for _, d := range r.d {
		ms := float64(d) / float64(time.Millisecond)
		i := sort.SearchFloat64s(histogramMs, ms)
		out[i].Count++
	}
	return out
}

// ring keeps the last latencyWindow durations.
type ring struct {
	d    []time.Duration
	next int
}

func (r *ring) add(d time.Duration) {
	if len(r.d) < latencyWindow {
		r.d = append(r.d, d)
		return
	}
	r.d[r.next] = d
	r.next = (r.next + 1) % latencyWindow
}

// percentiles returns two quantiles in milliseconds (nearest rank).
func (r *ring) percentiles(q1, q2 float64) (float64, float64) {
	if len(r.d) == 0 {
		return 0, 0
	}
	s := slices.Clone(r.d)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(q*float64(len(s))+0.5) - 1
		i = max(0, min(i, len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	return at(q1), at(q2)
}
