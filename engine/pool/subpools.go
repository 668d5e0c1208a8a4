package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// SubPool is a variable sub-pool of the warming pool: instances with
// constraints the administrator chose, reserved for one tenant. Its
// instances are of class SubPoolClass(Name), claimed and released like
// those of the fixed classes.
type SubPool struct {
	Name string `json:"name"`
	// Tenant is the only tenant whose functions run on its instances.
	Tenant string `json:"tenant"`
	// MemoryMB is each instance's memory: 128..MaxSubPoolMemoryMB.
	MemoryMB int64 `json:"memory_mb"`
	// MilliCPU is each instance's CPU in thousandths of a vCPU:
	// 100..64000. Default: MemoryMB / 1769 vCPU, as for the fixed classes.
	MilliCPU int64 `json:"millicpu"`
	// TmpMB is the size of a container's /tmp: 16..10240. Default: 64.
	TmpMB int64 `json:"tmp_mb"`
	// PidsLimit bounds the processes of an instance: 16..32768. Default: 256.
	PidsLimit int64 `json:"pids"`
	// Network is "egress" (default) or "none": with none, no function on
	// these instances reaches anything beyond its own loopback.
	Network string `json:"network"`
	// MinWarm instances are kept started across all hosts; Max bounds them.
	MinWarm int `json:"min_warm"`
	Max     int `json:"max"`
}

// Limits of a sub-pool's constraints.
const (
	MaxSubPoolMemoryMB = 10240
	MaxSubPoolMilliCPU = 64000
	MaxSubPoolSize     = 1000
	DefaultTmpMB       = 64
	DefaultPidsLimit   = 256
	// MBPerVCPU is the memory that buys one vCPU (as on AWS Lambda).
	MBPerVCPU = 1769
)

// ErrInvalidSubPool is wrapped by SubPool.Validate errors.
var ErrInvalidSubPool = errors.New("invalid sub-pool")

var subPoolName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidSubPoolName reports whether name can name a sub-pool.
func ValidSubPoolName(name string) bool { return subPoolName.MatchString(name) }

// subPoolPrefix starts every sub-pool class; fixed classes start with "m".
const subPoolPrefix = "sp-"

// SubPoolClass is the class name of sub-pool name's instances.
func SubPoolClass(name string) string { return subPoolPrefix + name }

// SubPoolOf returns the sub-pool name of a class, and false for a fixed class.
func SubPoolOf(class string) (string, bool) { return strings.CutPrefix(class, subPoolPrefix) }

// WithDefaults fills the zero constraints.
func (p SubPool) WithDefaults() SubPool {
	if p.MilliCPU == 0 {
		p.MilliCPU = max(p.MemoryMB*1000/MBPerVCPU, 100)
	}
	if p.TmpMB == 0 {
		p.TmpMB = DefaultTmpMB
	}
	if p.PidsLimit == 0 {
		p.PidsLimit = DefaultPidsLimit
	}
	if p.Network == "" {
		p.Network = "egress"
	}
	return p
}

// Needs is what one instance of p reserves on its host.
func (p SubPool) Needs() Resources {
	p = p.WithDefaults()
	return Resources{MemoryMB: p.MemoryMB, MilliCPU: p.MilliCPU}
}

// Validate reports the first problem with p (after defaults).
func (p SubPool) Validate() error {
	p = p.WithDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("sub-pool %q: %s: %w", p.Name, fmt.Sprintf(format, args...), ErrInvalidSubPool)
	}
	switch {
	case !subPoolName.MatchString(p.Name):
		return bad("a name is 1 to 32 of a-z, 0-9 and -, starting with a letter or digit")
	case p.Tenant == "":
		return bad("it needs a tenant")
	case p.MemoryMB < 128 || p.MemoryMB > MaxSubPoolMemoryMB:
		return bad("memory %d MB: want 128..%d", p.MemoryMB, MaxSubPoolMemoryMB)
	case p.MilliCPU < 100 || p.MilliCPU > MaxSubPoolMilliCPU:
		return bad("vCPU %.3f: want 0.1..%d", float64(p.MilliCPU)/1000, MaxSubPoolMilliCPU/1000)
	case p.TmpMB < 16 || p.TmpMB > 10240:
		return bad("/tmp %d MB: want 16..10240", p.TmpMB)
	case p.PidsLimit < 16 || p.PidsLimit > 32768:
		return bad("pids %d: want 16..32768", p.PidsLimit)
	case p.Network != "egress" && p.Network != "none":
		return bad("network %q: want egress or none", p.Network)
	case p.Max < 1 || p.Max > MaxSubPoolSize:
		return bad("max %d: want 1..%d", p.Max, MaxSubPoolSize)
	case p.MinWarm < 0 || p.MinWarm > p.Max:
		return bad("min warm %d: want 0..max (%d)", p.MinWarm, p.Max)
	}
	return nil
}

// SubPoolsChannel carries a sub-pool's name whenever it is created,
// changed or deleted.
func (s *Store) SubPoolsChannel() string { return s.prefix + "subpools:changed" }

// PutSubPool creates or replaces a sub-pool (validated, with defaults).
func (s *Store) PutSubPool(ctx context.Context, p SubPool) (SubPool, error) {
	if err := p.Validate(); err != nil {
		return SubPool{}, err
	}
	p = p.WithDefaults()
	b, err := json.Marshal(p)
	if err != nil {
		return SubPool{}, err
	}
	_, err = s.rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		tx.HSet(ctx, s.prefix+"subpools", p.Name, b)
		tx.Publish(ctx, s.SubPoolsChannel(), p.Name)
		return nil
	})
	if err != nil {
		return SubPool{}, fmt.Errorf("pool: put sub-pool %s: %w", p.Name, err)
	}
	return p, nil
}

// DeleteSubPool deletes a sub-pool; agents retire its instances as they
// idle. Deleting a missing one reports false.
func (s *Store) DeleteSubPool(ctx context.Context, name string) (bool, error) {
	var del *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		del = tx.HDel(ctx, s.prefix+"subpools", name)
		tx.Publish(ctx, s.SubPoolsChannel(), name)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("pool: delete sub-pool %s: %w", name, err)
	}
	return del.Val() == 1, nil
}

// SubPools lists every sub-pool, sorted by name.
func (s *Store) SubPools(ctx context.Context) ([]SubPool, error) {
	m, err := s.rdb.HGetAll(ctx, s.prefix+"subpools").Result()
	if err != nil {
		return nil, fmt.Errorf("pool: sub-pools: %w", err)
	}
	out := make([]SubPool, 0, len(m))
	for name, v := range m {
		var p SubPool
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			return nil, fmt.Errorf("pool: sub-pool %s: %w", name, err)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b SubPool) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// ReserveSubPoolInstance books a slot for a new instance id of a
// sub-pool, bounded by max across all hosts; with forMinWarm it books
// only while fewer than minWarm instances are started or starting. A booking
// lapses at deadline unless AddWarm (or ReleaseSubPoolSlot) settles it.
func (s *Store) ReserveSubPoolInstance(ctx context.Context, class, id string, p SubPool, forMinWarm bool, nowMs, deadlineMs int64) (bool, error) {
	mw := "0"
	if forMinWarm {
		mw = "1"
	}
	n, err := reserveMemberScript.Run(ctx, s.rdb, s.keys, class, id, p.Max, mw, p.MinWarm, nowMs, deadlineMs).Int()
	if err != nil {
		return false, fmt.Errorf("pool: reserve %s instance: %w", class, err)
	}
	return n == 1, nil
}

// ExtendSubPoolBooking moves a booking's lapse to deadlineMs; false if it
// has lapsed already (the slot may have gone to another instance).
func (s *Store) ExtendSubPoolBooking(ctx context.Context, class, id string, deadlineMs int64) (bool, error) {
	n, err := extendBookingScript.Run(ctx, s.rdb, s.keys, class, id, deadlineMs).Int()
	if err != nil {
		return false, fmt.Errorf("pool: extend %s booking: %w", class, err)
	}
	return n == 1, nil
}

// ReleaseSubPoolSlot gives back the booking of an instance that did not start.
func (s *Store) ReleaseSubPoolSlot(ctx context.Context, class, id string) error {
	if err := s.rdb.ZRem(ctx, s.prefix+"starting:"+class, id).Err(); err != nil {
		return fmt.Errorf("pool: release %s booking: %w", class, err)
	}
	return nil
}

// StateResource is a tenant's state resource on one host, as its agent
// last reported it.
type StateResource struct {
	Agent     string `json:"agent"`
	Tenant    string `json:"tenant"`
	Name      string `json:"name"`
	SizeBytes int64  `json:"size_bytes"`
	UsedBytes int64  `json:"used_bytes"`
	// Attached counts the host's instances it is attached to.
	Attached int `json:"attached"`
}

// ReportState records an agent's state resources, kept for ttl (its
// heartbeat's): a dead agent's report lapses with it.
func (s *Store) ReportState(ctx context.Context, agentID string, rs []StateResource, ttl time.Duration) error {
	b, err := json.Marshal(rs)
	if err != nil {
		return err
	}
	if err := s.rdb.Set(ctx, s.prefix+"agent:"+agentID+":state", b, ttl).Err(); err != nil {
		return fmt.Errorf("pool: report %s state: %w", agentID, err)
	}
	return nil
}

// StateResources lists the state resources live agents reported.
func (s *Store) StateResources(ctx context.Context) ([]StateResource, error) {
	agents, err := s.Agents(ctx)
	if err != nil {
		return nil, err
	}
	var out []StateResource
	for _, a := range agents {
		b, err := s.rdb.Get(ctx, s.prefix+"agent:"+a.ID+":state").Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pool: state of %s: %w", a.ID, err)
		}
		var rs []StateResource
		if err := json.Unmarshal(b, &rs); err != nil {
			return nil, fmt.Errorf("pool: state of %s: %w", a.ID, err)
		}
		out = append(out, rs...)
	}
	return out, nil
}
