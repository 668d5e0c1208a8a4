package hostagent

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ember-run/ember/engine/pool"
	"github.com/ember-run/ember/hostagent/initproto"
	"github.com/ember-run/ember/hostagent/logrelay"
)

// instState is where an instance is in its life.
type instState int

const (
	stStarting instState = iota // being created, not yet in Redis
	stReady                     // in Redis (warming or active pool)
	stGone                      // retiring, broken or destroyed: no new work
)

// instance is one sandbox as the agent sees it.
type instance struct {
	id, class string
	memoryMB  int64
	// needs is what the instance reserves of the host's capacity.
	needs pool.Resources
	// subpool is the definition of its sub-pool when it started (nil for
	// a fixed class).
	subpool *pool.SubPool
	dir     string // <StateDir>/instances/<id>
	// slot numbers the instance's host uid range (Config.UIDBase +
	// slot*Config.UIDRange): no two live instances share one.
	slot    int
	hostUID int

	// op serialises work on the instance's containers: a Dispatch, a
	// reclaim of idle containers. Held across init round trips.
	op sync.Mutex

	// Fields below are guarded by Agent.mu.
	state  instState
	tenant string // "" while in the warming pool
	// running counts the dispatches in flight and runningMB their
	// functions' memory: a second dispatch runs beside the first (another
	// container) only while the instance's memory holds both.
	running   int
	runningMB int64
	// parked are the invocations suspended on the instance (park.go), by
	// invocation id; parkedMB the memory their containers hold.
	parked     map[string]*parked
	parkedMB   int64
	missing    int // consecutive reclaim passes that did not find it in Redis
	lastUsed   time.Time
	cgroupPath string
	client     *initClient
	// lost: Redis forgot the instance (heartbeat lapse) while it had a
	// tenant; it is destroyed when idle.
	lost bool
	// fromDemand: started for a scheduler's demand, beyond the pool target.
	fromDemand bool
	// definedAhead: its container was made before its boot (ahead.go).
	definedAhead bool
	// hasState: a state resource was attached to it (it is not left
	// running at a stop: reattach.go).
	hasState bool
	// relay is the instance's way out to its logging service, opened by
	// the first configuration.
	relay *logrelay.Relay
	// spare is a network namespace set aside and connected for the next
	// container with egress (spare.go); sparing: one is being made.
	spare   *spareNetns
	sparing bool
	// noSpareUntil: setting one aside failed; not tried again before.
	noSpareUntil time.Time
	// boosts are its containers whose start's CPU boost runs (boost.go),
	// by container id; noBoostUntil: one ran out, none before. Guarded by
	// Agent.boostMu.
	boosts       map[string]*boost
	noBoostUntil time.Time

	// Guarded by op.
	containers map[string]*container // by container key
	codes      map[string]bool       // digest hex delivered to code/<hex>
	// logService is the logging service ember-init is configured for
	// ("" none; written under op and Agent.mu), logStats its counts as last
	// reported (under Agent.mu).
	logService string
	logStats   initproto.LogStats
}

func (in *instance) sockDir() string  { return filepath.Join(in.dir, "sock") }
func (in *instance) codeDir() string  { return filepath.Join(in.dir, "code") }
func (in *instance) logPath() string  { return filepath.Join(in.dir, "log", "init.log") }
func (in *instance) fnLogDir() string { return filepath.Join(in.dir, "log", "functions") }
func (in *instance) stateDir() string { return filepath.Join(in.dir, "state") }

// container is one function version's container on an instance.
type container struct {
	id         string // unique per instance; initproto container id
	key        string
	versionKey string // pool.VersionKey: what the hot sets name
	cg         CgroupChild
	lastUsed   time.Time
	meter      Meter // nil when not measured; closed before cg is removed
	memoryMB   int64
	// netnsFD holds the container's network namespace while it is attached
	// for egress (-1: not attached); netID names the attachment.
	netnsFD int
	netID   string
	// Guarded by Agent.mu:
	// oomKills is the cgroup's out-of-memory kill count last seen.
	oomKills int64
	// preloadTag is the tag of the pre-load that started the container,
	// until its first invocation returns it.
	preloadTag string
	// inUse counts the invocations running in it; a container taken out of
	// in.containers while in use (superseded, its function deleted) is
	// stopped when the last ends: retire says why, retireHot whether its
	// version stops being hot.
	inUse     int
	retire    string
	retireHot bool
	// stopped: a stop began (a container is stopped once).
	stopped bool
	// dumped is the host pid of the process a checkpoint killed last, and
	// bootNS the function process's pid in its pid namespace once
	// checkpointed (checkpoint.go).
	dumped, bootNS atomic.Int64
}

// busyLocked: a dispatch runs on the instance or an invocation is parked
// there. Caller holds Agent.mu.
func (in *instance) busyLocked() bool { return in.running > 0 || len(in.parked) > 0 }

// containerKey identifies a version's configuration: a container is reused
// only for the same code and the same settings.
func containerKey(versionKey, digest, handler, network string, memoryMB, timeoutMs int64, env map[string]string) string {
	h := sha256.New()
	for _, s := range []string{versionKey, digest, handler, network, strconv.FormatInt(memoryMB, 10), strconv.FormatInt(timeoutMs, 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(env[k]))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:20]
}

// lruVictims returns the containers to evict so that at most max remain,
// never keep, least recently used first.
func lruVictims(cs map[string]*container, max int, keep string) []*container {
	if len(cs) <= max {
		return nil
	}
	all := make([]*container, 0, len(cs))
	for _, c := range cs {
		if c.key != keep && c.inUse == 0 { // one running is not evicted
			all = append(all, c)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].lastUsed.Before(all[j].lastUsed) })
	n := len(cs) - max
	if n > len(all) {
		n = len(all)
	}
	return all[:n]
}

// idleContainers returns the containers unused since before cutoff.
func idleContainers(cs map[string]*container, cutoff time.Time) []*container {
	var out []*container
	for _, c := range cs {
		if c.inUse == 0 && c.lastUsed.Before(cutoff) {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].lastUsed.Before(out[j].lastUsed) })
	return out
}
