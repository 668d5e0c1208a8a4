package lagmon

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"
)

// Target is a binding to watch.
type Target struct {
	// Key identifies the binding (tenant/id), Tenant owns it.
	Key, Tenant string
	Topic       string
	Group       string
}

// Config tunes a Monitor. Zero values take the defaults.
type Config struct {
	// Interval between samples. Default: 5s.
	Interval time.Duration
	// Window is how many samples a status and the rates are computed
	// over. Default: 12 (a minute at the default interval).
	Window int
	// Keep is how long samples are kept for charts. Default: 1h.
	Keep time.Duration
	// Targets lists the bindings to watch at each sample.
	Targets func(ctx context.Context) ([]Target, error)
	// Local, when set, returns the timestamp of a record this process
	// still holds for binding key (consumers.Manager.RecordTime): the
	// time lag of a partition it consumes needs no read from the broker.
	Local func(key string, partition int, offset int64) (time.Time, bool)
	Log   zerolog.Logger
}

// Partition is a partition's newest sample with its verdict.
type Partition struct {
	Sample
	Status Status
	Reason string
	// ConsumeRate and ProduceRate are records per second over the window;
	// DrainSeconds estimates the time to drain the lag at those rates (0:
	// no lag, -1: the lag does not shrink).
	ConsumeRate, ProduceRate, DrainSeconds float64
}

// Binding is a binding's newest sample: its partitions and their worst
// status, its total offset lag and its largest time lag.
type Binding struct {
	Target
	At         time.Time
	Partitions []Partition
	Lag        int64
	LagSeconds float64
	// ConsumeRate and ProduceRate are the partitions' sums; DrainSeconds
	// the longest drain (-1 when a partition with lag does not drain).
	ConsumeRate, ProduceRate, DrainSeconds float64
	Members                                int
	Status                                 Status
	Reason                                 string
}

// Point is one sample of a partition, for charts.
type Point struct {
	At         time.Time
	Lag        int64
	LagSeconds float64
}

// Monitor samples the lag of every target at an interval and keeps an hour
// of history. Safe for concurrent use.
type Monitor struct {
	cl  *kafka.Client
	cfg Config

	mu     sync.Mutex
	by     map[string]*watched
	stamps map[topicPartition]stamp // the timestamp of each partition's oldest uncommitted record

	// Where timestamps came from: the cache of the last one, the local
	// consumers, a read from the broker.
	fromCache, fromLocal, fromBroker atomic.Int64
}

type watched struct {
	latest  Binding
	history map[int][]Sample // partition -> samples, oldest first
}

type topicPartition struct {
	topic     string
	partition int
}

type stamp struct {
	offset int64
	at     time.Time
}

// New returns a Monitor that reads through cl, a long-lived client.
func New(cl *kafka.Client, cfg Config) *Monitor {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Window <= 1 {
		cfg.Window = 12
	}
	if cfg.Keep <= 0 {
		cfg.Keep = time.Hour
	}
	return &Monitor{cl: cl, cfg: cfg, by: map[string]*watched{}, stamps: map[topicPartition]stamp{}}
}

// Interval returns the time between samples.
func (m *Monitor) Interval() time.Duration { return m.cfg.Interval }

// Run samples every Interval until ctx is done.
func (m *Monitor) Run(ctx context.Context) error {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.SampleOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SampleOnce takes one sample of every target.
func (m *Monitor) SampleOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, max(m.cfg.Interval, 5*time.Second))
	defer cancel()
	targets, err := m.cfg.Targets(ctx)
	if err != nil {
		m.cfg.Log.Warn().Err(err).Msg("lag: listing the bindings")
		return
	}
	now := time.Now()
	samples := m.read(ctx, targets, now)
	m.mu.Lock()
	defer m.mu.Unlock()
	keep := map[string]bool{}
	for i, t := range targets {
		keep[t.Key] = true
		w := m.by[t.Key]
		if w == nil || w.latest.Topic != t.Topic || w.latest.Group != t.Group {
			w = &watched{history: map[int][]Sample{}}
			m.by[t.Key] = w
		}
		w.add(t, samples[i], now, m.cfg)
	}
	for k := range m.by {
		if !keep[k] {
			delete(m.by, k)
		}
	}
}

// read samples each target's partitions; a target that cannot be read
// gets one sample with Err set, partition -1.
func (m *Monitor) read(ctx context.Context, targets []Target, now time.Time) [][]Sample {
	out := make([][]Sample, len(targets))
	fail := func(i int, err error) {
		out[i] = []Sample{{At: now, Offsets: Offsets{Partition: -1}, Err: err.Error()}}
	}
	var topics, groups []string
	for _, t := range targets {
		if !slices.Contains(topics, t.Topic) {
			topics = append(topics, t.Topic)
		}
		if !slices.Contains(groups, t.Group) {
			groups = append(groups, t.Group)
		}
	}
	if len(targets) == 0 {
		return out
	}
	ends, err := readEnds(ctx, m.cl, topics)
	if err != nil {
		for i := range targets {
			fail(i, err)
		}
		return out
	}
	members := map[string]int{}
	if dg, err := m.cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: groups}); err == nil {
		for _, g := range dg.Groups {
			if g.Error == nil {
				members[g.GroupID] = len(g.Members)
			}
		}
	}
	for i, t := range targets {
		te := ends[t.Topic]
		if te.err != nil {
			fail(i, te.err)
			continue
		}
		committed, err := readCommitted(ctx, m.cl, t.Group, t.Topic, te.ids())
		if err != nil {
			fail(i, err)
			continue
		}
		for _, o := range combine(te, committed) {
			s := Sample{At: now, Offsets: o, Members: members[t.Group]}
			if o.Lag > 0 {
				at, err := m.oldestTime(ctx, t, o)
				if err != nil {
					s.Err = err.Error()
				} else {
					s.LagSeconds = max(0, now.Sub(at).Seconds())
				}
			}
			out[i] = append(out[i], s)
		}
	}
	return out
}

// oldestTime returns the timestamp of the oldest uncommitted record of a
// partition: the one of the previous sample when the offset is the same,
// else from the local consumers when they hold the record, else read from
// the broker.
func (m *Monitor) oldestTime(ctx context.Context, t Target, o Offsets) (time.Time, error) {
	tp := topicPartition{t.Topic, o.Partition}
	off := o.Oldest()
	m.mu.Lock()
	st, ok := m.stamps[tp]
	m.mu.Unlock()
	if ok && st.offset == off {
		m.fromCache.Add(1)
		return st.at, nil
	}
	at, ok := time.Time{}, false
	if m.cfg.Local != nil {
		at, ok = m.cfg.Local(t.Key, o.Partition, off)
	}
	if ok {
		m.fromLocal.Add(1)
	} else {
		var err error
		if at, err = readTimestamp(ctx, m.cl, t.Topic, o.Partition, off); err != nil {
			return time.Time{}, err
		}
		m.fromBroker.Add(1)
	}
	m.mu.Lock()
	m.stamps[tp] = stamp{offset: off, at: at}
	m.mu.Unlock()
	return at, nil
}

// TimestampSources returns how many timestamps came from the cache, from
// the local consumers and from the broker.
func (m *Monitor) TimestampSources() (cache, local, broker int64) {
	return m.fromCache.Load(), m.fromLocal.Load(), m.fromBroker.Load()
}

// add appends a round's samples and recomputes the verdicts.
func (w *watched) add(t Target, samples []Sample, now time.Time, cfg Config) {
	b := Binding{Target: t, At: now, Status: OK}
	seen := map[int]bool{}
	for _, s := range samples {
		seen[s.Partition] = true
		h := append(w.history[s.Partition], s)
		drop := 0
		for drop < len(h)-1 && now.Sub(h[drop].At) > cfg.Keep {
			drop++
		}
		h = h[drop:]
		w.history[s.Partition] = h
		win := h[max(0, len(h)-cfg.Window):]
		p := Partition{Sample: s}
		p.Status, p.Reason = Evaluate(win, cfg.Window)
		p.ConsumeRate, p.ProduceRate, p.DrainSeconds = rates(win)
		b.Partitions = append(b.Partitions, p)
		b.Lag += s.Lag
		b.LagSeconds = max(b.LagSeconds, s.LagSeconds)
		b.ConsumeRate += p.ConsumeRate
		b.ProduceRate += p.ProduceRate
		if p.DrainSeconds < 0 || b.DrainSeconds < 0 {
			b.DrainSeconds = -1
		} else {
			b.DrainSeconds = max(b.DrainSeconds, p.DrainSeconds)
		}
		b.Members = s.Members
		if worse := b.Status.Worse(p.Status); worse != b.Status || b.Reason == "" {
			b.Status, b.Reason = worse, p.Reason
			if s.Partition >= 0 {
				b.Reason = "partition " + strconv.Itoa(s.Partition) + ": " + p.Reason
			}
		}
	}
	for id := range w.history {
		if !seen[id] {
			delete(w.history, id)
		}
	}
	w.latest = b
}

// Binding returns the newest sample of the binding with key.
func (m *Monitor) Binding(key string) (Binding, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.by[key]
	if w == nil {
		return Binding{}, false
	}
	return w.latest, true
}

// Bindings returns the newest sample of every watched binding.
func (m *Monitor) Bindings() []Binding {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Binding, 0, len(m.by))
	for _, w := range m.by {
		out = append(out, w.latest)
	}
	slices.SortFunc(out, func(a, b Binding) int {
		if a.Key < b.Key {
			return -1
		}
		if a.Key > b.Key {
			return 1
		}
		return 0
	})
	return out
}

// History returns the binding's samples since since, per partition,
// oldest first.
func (m *Monitor) History(key string, since time.Time) map[int][]Point {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.by[key]
	if w == nil {
		return nil
	}
	out := make(map[int][]Point, len(w.history))
	for id, h := range w.history {
		i, _ := slices.BinarySearchFunc(h, since, func(s Sample, t time.Time) int { return s.At.Compare(t) })
		pts := make([]Point, 0, len(h)-i)
		for _, s := range h[i:] {
			pts = append(pts, Point{At: s.At, Lag: s.Lag, LagSeconds: s.LagSeconds})
		}
		out[id] = pts
	}
	return out
}

// Current reads t's offsets and time lag now and adds the verdicts, rates
// and members of the newest sample (a partition not sampled yet is OK, "no
// samples yet").
func (m *Monitor) Current(ctx context.Context, t Target) (Binding, error) {
	offs, err := ReadOffsets(ctx, m.cl, t.Topic, t.Group)
	if err != nil {
		return Binding{}, err
	}
	now := time.Now()
	latest, _ := m.Binding(t.Key)
	verdicts := make(map[int]Partition, len(latest.Partitions))
	for _, p := range latest.Partitions {
		verdicts[p.Partition] = p
	}
	b := Binding{Target: t, At: now, Members: latest.Members, Status: OK, Reason: latest.Reason,
		ConsumeRate: latest.ConsumeRate, ProduceRate: latest.ProduceRate, DrainSeconds: latest.DrainSeconds}
	if latest.Status != "" {
		b.Status = latest.Status
	}
	for _, o := range offs {
		p, ok := verdicts[o.Partition]
		if !ok {
			p = Partition{Status: OK, Reason: "no samples yet"}
		}
		p.Sample = Sample{At: now, Offsets: o, Members: latest.Members}
		if o.Lag > 0 {
			if at, err := m.oldestTime(ctx, t, o); err != nil {
				p.Err = err.Error()
			} else {
				p.LagSeconds = max(0, now.Sub(at).Seconds())
			}
		} else {
			p.DrainSeconds = 0
		}
		b.Partitions = append(b.Partitions, p)
		b.Lag += o.Lag
		b.LagSeconds = max(b.LagSeconds, p.LagSeconds)
	}
	if b.Lag == 0 {
		b.DrainSeconds = 0
	}
	return b, nil
}
