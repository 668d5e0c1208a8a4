package pool

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Kind says which pool a claim came from, in the order the claim tries them.
type Kind string

const (
	// KindHot: an idle instance where the version's container is running.
	KindHot Kind = "hot"
	// KindActive: an idle instance already assigned to the tenant.
	KindActive Kind = "active"
	// KindWarm: an instance from the warming pool, now assigned to the tenant.
	KindWarm Kind = "warm"
	// KindBeside: a busy instance running another configuration of the
	// function (an older version), claimed beside that claim: the version
	// starts in a second container there.
	KindBeside Kind = "beside"
	// KindResume: the instance a suspended invocation is parked on, claimed
	// by id to resume it (ClaimInstance).
	KindResume Kind = "resume"
)

// Want is what a claim asks for.
type Want struct {
	Tenant, Class string
	// VersionKey (VersionKey) finds instances where the version is hot.
	VersionKey string
	// LogService is the logging service id the invocation needs ("" none).
	LogService string
	// Function (tenant/function), Config (the version's configuration id)
	// and MemoryMB let a claim take a busy instance that runs another
	// configuration of the function and has room for this one (KindBeside).
	// Empty: never beside.
	Function, Config string
	MemoryMB         int64
	// Ticket is the invocation's place in the tenant's queue for the class
	// (Enqueue), shared by every emberd. While the queue has waiters only
	// its head may claim; empty: a claim without waiting, which only an
	// empty queue allows.
	Ticket string
}

// Agent is a registered host agent.
type Agent struct {
	ID string
	// Addr is the agent's dispatch gRPC address (host:port or unix:///path).
	Addr    string
	Started time.Time
	// Capacity is what the host may give instances; Used what its
	// instances (started or starting) reserve, as of its last report.
	Capacity, Used Resources
}

// Resources are memory and CPU (thousandths of a vCPU).
type Resources struct {
	MemoryMB int64
	MilliCPU int64
}

// Fits reports whether r holds need.
func (r Resources) Fits(need Resources) bool {
	return need.MemoryMB <= r.MemoryMB && need.MilliCPU <= r.MilliCPU
}

// Add returns r plus o.
func (r Resources) Add(o Resources) Resources {
	return Resources{MemoryMB: r.MemoryMB + o.MemoryMB, MilliCPU: r.MilliCPU + o.MilliCPU}
}

// Sub returns r minus o.
func (r Resources) Sub(o Resources) Resources {
	return Resources{MemoryMB: r.MemoryMB - o.MemoryMB, MilliCPU: r.MilliCPU - o.MilliCPU}
}

// Instance is one pre-started sandbox as the pool sees it.
type Instance struct {
	ID    string
	Agent string
	Class string
	// Tenant is empty while the instance is in the warming pool.
	Tenant string
	Busy   bool
	Hot    []string
	// LogService is the logging service id it is configured for ("" none).
	LogService string
}

// Claim is an instance a scheduler holds until it calls Store.Release.
type Claim struct {
	InstanceID string
	Agent      string
	Kind       Kind
	// Token identifies this claim: Release with it frees the instance
	// only while this claim holds it (not after its lease expired and
	// another claim took the instance).
	Token string
	// LogService is the logging service id the claim was made for: a
	// kept instance is recorded as configured for it on Release.
	LogService string
	// Lease is when the claim lapses unless released (the instance then
	// goes back to the pool).
	Lease time.Time
}

// ErrStaleClaim: a Release whose claim no longer holds the instance.
var ErrStaleClaim = errors.New("pool: the claim no longer holds the instance")

// Store reads and writes pool state. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	keys   []string // the scripts' KEYS: the prefix, naming their hash tag
}

// Option configures a Store.
type Option func(*Store) error

// WithPrefix sets the key prefix. Default "{ember}:". It must contain a
// Redis Cluster hash tag ("{...}") so all keys land in one slot.
func WithPrefix(p string) Option {
	return func(s *Store) error {
		if !strings.Contains(p, "{") || !strings.Contains(p, "}") {
			return fmt.Errorf("pool: prefix %q has no hash tag {...}", p)
		}
		s.prefix = p
		return nil
	}
}

// New returns a Store over rdb.
func New(rdb redis.UniversalClient, opts ...Option) (*Store, error) {
	if rdb == nil {
		return nil, errors.New("pool: nil redis client")
	}
	s := &Store{rdb: rdb, prefix: "{ember}:"}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.keys = []string{s.prefix}
	return s, nil
}

// FreedChannel is the pub/sub channel that carries a class name whenever an
// instance of that class becomes claimable.
func (s *Store) FreedChannel() string { return s.prefix + "freed" }

// WantedChannel is the pub/sub channel on which Enqueue announces a waiter:
// "<class> <tenant>". Schedulers holding idle claims of that class and
// tenant give them back.
func (s *Store) WantedChannel() string { return s.prefix + "wanted" }

// DemandChannel is the pub/sub channel on which schedulers ask agents for a
// new instance of a class.
func (s *Store) DemandChannel() string { return s.prefix + "demand" }

// RetireChannel is the pub/sub channel that tells agents to stop the
// containers of a deleted function: "<tenant>/<function>".
func (s *Store) RetireChannel() string { return s.prefix + "retire" }

// RetireFunction forgets that the function's versions (their version
// keys) are hot on any instance, so no claim picks an instance for them,
// and tells every agent to stop their containers.
func (s *Store) RetireFunction(ctx context.Context, tenant, function string, versionKeys []string) error {
	args := append([]any{tenant + "/" + function}, toAny(versionKeys)...)
	if err := retireFunctionScript.Run(ctx, s.rdb, s.keys, args...).Err(); err != nil {
		return fmt.Errorf("pool: retire %s/%s: %w", tenant, function, err)
	}
	return nil
}

// RegisterAgent records an agent with a heartbeat TTL.
func (s *Store) RegisterAgent(ctx context.Context, a Agent, ttl time.Duration) error {
	key := s.prefix + "agent:" + a.ID
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, "addr", a.Addr, "started", a.Started.UnixMilli(),
			"cap_mem", a.Capacity.MemoryMB, "cap_mcpu", a.Capacity.MilliCPU,
			"used_mem", a.Used.MemoryMB, "used_mcpu", a.Used.MilliCPU)
		p.PExpire(ctx, key, ttl)
		p.SAdd(ctx, s.prefix+"agents", a.ID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("pool: register agent %s: %w", a.ID, err)
	}
	return nil
}

// Heartbeat extends an agent's TTL. It reports false if the agent's key had
// already expired: the agent must register again and re-add its instances,
// since claims will have dropped them.
func (s *Store) Heartbeat(ctx context.Context, agentID string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.PExpire(ctx, s.prefix+"agent:"+agentID, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("pool: heartbeat %s: %w", agentID, err)
	}
	return ok, nil
}

// RemoveAgent drops an agent and every instance it registered. Removing an
// unknown agent is success.
func (s *Store) RemoveAgent(ctx context.Context, agentID string) error {
	if err := removeAgentScript.Run(ctx, s.rdb, s.keys, agentID).Err(); err != nil {
		return fmt.Errorf("pool: remove agent %s: %w", agentID, err)
	}
	return nil
}

// Agents lists live agents (those whose heartbeat key exists).
func (s *Store) Agents(ctx context.Context) ([]Agent, error) {
	ids, err := s.rdb.SMembers(ctx, s.prefix+"agents").Result()
	if err != nil {
		return nil, fmt.Errorf("pool: agents: %w", err)
	}
	var out []Agent
	for _, id := range ids {
		a, err := s.Agent(ctx, id)
		if err != nil {
			continue // expired between SMEMBERS and HGETALL, or never alive
		}
		out = append(out, a)
	}
	return out, nil
}

// ErrAgentGone is returned by Agent for an agent whose heartbeat lapsed.
var ErrAgentGone = errors.New("pool: agent not alive")

// Agent returns one live agent.
func (s *Store) Agent(ctx context.Context, id string) (Agent, error) {
	m, err := s.rdb.HGetAll(ctx, s.prefix+"agent:"+id).Result()
	if err != nil {
		return Agent{}, fmt.Errorf("pool: agent %s: %w", id, err)
	}
	if len(m) == 0 {
		return Agent{}, fmt.Errorf("agent %s: %w", id, ErrAgentGone)
	}
	num := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	return Agent{
		ID: id, Addr: m["addr"], Started: time.UnixMilli(num("started")),
		Capacity: Resources{MemoryMB: num("cap_mem"), MilliCPU: num("cap_mcpu")},
		Used:     Resources{MemoryMB: num("used_mem"), MilliCPU: num("used_mcpu")},
	}, nil
}

// ReportUsed records what an agent's instances reserve now. It does not
// revive an agent whose heartbeat key lapsed.
func (s *Store) ReportUsed(ctx context.Context, agentID string, used Resources) error {
	key := s.prefix + "agent:" + agentID
	if err := reportUsedScript.Run(ctx, s.rdb, []string{key}, used.MemoryMB, used.MilliCPU).Err(); err != nil {
		return fmt.Errorf("pool: report %s usage: %w", agentID, err)
	}
	return nil
}

// AddWarm puts a started instance into the warming pool of its class.
func (s *Store) AddWarm(ctx context.Context, id, agentID, class string) error {
	if err := addScript.Run(ctx, s.rdb, s.keys, id, agentID, class).Err(); err != nil {
		return fmt.Errorf("pool: add instance %s: %w", id, err)
	}
	return nil
}

// AddActive puts an instance assigned to tenant back into the tenant's
// active pool, idle, with the version keys hot on it: what an agent does
// when Redis lost its instances (a restart without persistence, a
// failover).
func (s *Store) AddActive(ctx context.Context, id, agentID, class, tenant string, hot []string) error {
	args := append([]any{id, agentID, class, tenant}, toAny(hot)...)
	if err := addActiveScript.Run(ctx, s.rdb, s.keys, args...).Err(); err != nil {
		return fmt.Errorf("pool: add active instance %s: %w", id, err)
	}
	return nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Retire removes an instance if it is idle and reports whether it is gone.
// A busy instance stays (false); retiring a missing instance is success.
// With force, a busy instance is removed too (its agent lost it).
func (s *Store) Retire(ctx context.Context, id string, force bool) (bool, error) {
	f := "0"
	if force {
		f = "1"
	}
	n, err := retireScript.Run(ctx, s.rdb, s.keys, id, f).Int()
	if err != nil {
		return false, fmt.Errorf("pool: retire %s: %w", id, err)
	}
	return n == 1, nil
}

// DropHot records that a version's container no longer runs on an instance.
func (s *Store) DropHot(ctx context.Context, id, versionKey string) error {
	if err := dropHotScript.Run(ctx, s.rdb, s.keys, id, versionKey).Err(); err != nil {
		return fmt.Errorf("pool: drop hot %s on %s: %w", versionKey, id, err)
	}
	return nil
}

// Claim takes one idle instance for tenant in class, preferring one where
// versionKey is hot. ok is false when none is free. The claim holds until
// Release or until lease passes (then ExpireLeases returns it to the pool).
func (s *Store) Claim(ctx context.Context, tenant, class, versionKey string, lease time.Time) (c Claim, ok bool, err error) {
	return s.ClaimFor(ctx, Want{Tenant: tenant, Class: class, VersionKey: versionKey}, lease)
}

// ClaimFor is Claim for what w describes: instances configured for its
// logging service first, a busy instance running an older version of its
// function when that has room (see claimScript for the whole order).
func (s *Store) ClaimFor(ctx context.Context, w Want, lease time.Time) (c Claim, ok bool, err error) {
	tenant, class, logService := w.Tenant, w.Class, w.LogService
	if tenant == "" || class == "" {
		return Claim{}, false, fmt.Errorf("pool: claim needs a tenant and a class")
	}
	token := strconv.FormatUint(rand.Uint64(), 36)
	v, err := claimScript.Run(ctx, s.rdb, s.keys, tenant, class, w.VersionKey, lease.UnixMilli(), token, logService,
		w.Function, w.Config, w.MemoryMB, w.Ticket).Slice()
	if errors.Is(err, redis.Nil) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, fmt.Errorf("pool: claim %s/%s: %w", tenant, class, err)
	}
	if len(v) != 3 {
		return Claim{}, false, fmt.Errorf("pool: claim returned %d values", len(v))
	}
	id, _ := v[0].(string)
	agent, _ := v[1].(string)
	kind, _ := v[2].(string)
	if kind == "noticket" {
		return Claim{}, false, ErrNoTicket
	}
	return Claim{InstanceID: id, Agent: agent, Kind: Kind(kind), Token: token, LogService: logService, Lease: lease}, true, nil
}

// ClaimInstance claims instance id for tenant, to resume an invocation
// parked there: the instance if it is idle, else a claim beside the one
// that holds it (KindResume either way). ok is false while both are
// taken; ErrInstanceGone when the instance, its agent or its tenancy is gone.
func (s *Store) ClaimInstance(ctx context.Context, id, tenant, logService string, lease time.Time) (c Claim, ok bool, err error) {
	token := strconv.FormatUint(rand.Uint64(), 36)
	v, err := claimInstanceScript.Run(ctx, s.rdb, s.keys, id, tenant, lease.UnixMilli(), token).Slice()
	if errors.Is(err, redis.Nil) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, fmt.Errorf("pool: claim instance %s: %w", id, err)
	}
	if len(v) != 2 {
		return Claim{}, false, fmt.Errorf("pool: claim instance returned %d values", len(v))
	}
	agent, _ := v[0].(string)
	if agent == "" {
		return Claim{}, false, fmt.Errorf("pool: claim instance %s: %w", id, ErrInstanceGone)
	}
	return Claim{InstanceID: id, Agent: agent, Kind: KindResume, Token: token, LogService: logService, Lease: lease}, true, nil
}

// ErrInstanceGone: ClaimInstance's instance is no longer the tenant's.
var ErrInstanceGone = errors.New("pool: the instance is gone")

// ErrNoTicket: a claim's ticket is no longer in its queue (its lease
// lapsed); Renew puts it back at its place.
var ErrNoTicket = errors.New("pool: the waiter's ticket is not in its queue")

// Enqueue puts ticket id (unique, chosen by the caller: a failed call can
// still be undone with Dequeue) in the tenant's queue for class, after
// every earlier waiter of every emberd, leased for lease, and returns its
// place. The ticket goes when a claim with it succeeds, with Dequeue, or
// when its lease lapses (Renew extends it).
func (s *Store) Enqueue(ctx context.Context, class, tenant, id string, lease time.Duration) (int64, error) {
	n, err := enqueueScript.Run(ctx, s.rdb, s.keys, class, tenant, id, lease.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("pool: enqueue for %s/%s: %w", tenant, class, err)
	}
	return n, nil
}

// Renew extends ticket id's lease by lease from now, putting it back at
// place n if it had lapsed.
func (s *Store) Renew(ctx context.Context, class, tenant, id string, n int64, lease time.Duration) error {
	if err := renewScript.Run(ctx, s.rdb, s.keys, class, tenant, id, n, lease.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("pool: renew %s in %s/%s: %w", id, tenant, class, err)
	}
	return nil
}

// Dequeue takes a ticket out of its queue (its invocation gave up or was
// served another way). If it was the head, the next waiter tries at once.
func (s *Store) Dequeue(ctx context.Context, class, tenant, ticket string) error {
	if err := dequeueScript.Run(ctx, s.rdb, s.keys, class, tenant, ticket).Err(); err != nil {
		return fmt.Errorf("pool: dequeue %s from %s/%s: %w", ticket, tenant, class, err)
	}
	return nil
}

// Waiting counts the tickets in the tenant's queue for class: invocations
// of every emberd waiting for an instance.
func (s *Store) Waiting(ctx context.Context, class, tenant string) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.prefix+"wait:"+class+":"+tenant).Result()
	if err != nil {
		return 0, fmt.Errorf("pool: waiting for %s/%s: %w", tenant, class, err)
	}
	return n, nil
}

// IdleHot counts the idle instances where versionKey is hot, whatever
// logging service they are configured for (an entry may be stale until a
// claim meets it).
func (s *Store) IdleHot(ctx context.Context, versionKey string) (int64, error) {
	n, err := idleHotScript.Run(ctx, s.rdb, s.keys, versionKey).Int64()
	if err != nil {
		return 0, fmt.Errorf("pool: idle hot %s: %w", versionKey, err)
	}
	return n, nil
}

// Release returns claim c's instance to the active pool of its tenant, with
// versionKey now hot on it (empty: none added). With keep false the instance
// is dropped from the pool instead (it is broken or its agent is retiring
// it). ErrStaleClaim: c no longer holds the instance; nothing changed.
func (s *Store) Release(ctx context.Context, c Claim, versionKey string, keep bool) error {
	k := "0"
	if keep {
		k = "1"
	}
	n, err := releaseScript.Run(ctx, s.rdb, s.keys, c.InstanceID, c.Token, versionKey, k, c.LogService).Int()
	if err != nil {
		return fmt.Errorf("pool: release %s: %w", c.InstanceID, err)
	}
	if n < 0 {
		return fmt.Errorf("release %s: %w", c.InstanceID, ErrStaleClaim)
	}
	return nil
}

// ExpireLeases returns instances whose claim lease passed before now to the
// pool and reports how many.
func (s *Store) ExpireLeases(ctx context.Context, now time.Time) (int, error) {
	n, err := expireLeasesScript.Run(ctx, s.rdb, s.keys, now.UnixMilli()).Int()
	if err != nil {
		return 0, fmt.Errorf("pool: expire leases: %w", err)
	}
	return n, nil
}

// RequestInstance asks agents for a new instance of class (on
// DemandChannel): agent "" asks every agent, else only that one.
func (s *Store) RequestInstance(ctx context.Context, class, agent string) error {
	msg := class
	if agent != "" {
		msg += " " + agent
	}
	if err := s.rdb.Publish(ctx, s.DemandChannel(), msg).Err(); err != nil {
		return fmt.Errorf("pool: request instance %s: %w", class, err)
	}
	return nil
}

// TakeRoomTurn reports whether agentID may retire idle instances to make
// room for a waiter of class: one agent per class for ttl, so that the
// demand every agent hears does not make each full host retire one.
func (s *Store) TakeRoomTurn(ctx context.Context, class, agentID string, ttl time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.prefix+"room:"+class, agentID, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("pool: room turn for %s: %w", class, err)
	}
	return ok, nil
}

// Instances lists an agent's instances with their state.
func (s *Store) Instances(ctx context.Context, agentID string) ([]Instance, error) {
	ids, err := s.rdb.SMembers(ctx, s.prefix+"agent:"+agentID+":insts").Result()
	if err != nil {
		return nil, fmt.Errorf("pool: instances of %s: %w", agentID, err)
	}
	// One round trip for all of them (a status of a host with hundreds
	// of instances made as many).
	hgets := make([]*redis.SliceCmd, len(ids))
	hots := make([]*redis.StringSliceCmd, len(ids))
	if len(ids) > 0 {
		if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range ids {
				key := s.prefix + "inst:" + id
				hgets[i] = p.HMGet(ctx, key, "agent", "class", "tenant", "state", "log")
				hots[i] = p.SMembers(ctx, key+":hot")
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("pool: instances of %s: %w", agentID, err)
		}
	}
	out := make([]Instance, 0, len(ids))
	str := func(v any) string { s, _ := v.(string); return s }
	for i, id := range ids {
		h := hgets[i].Val()
		if h[0] == nil {
			continue
		}
		out = append(out, Instance{
			ID: id, Agent: str(h[0]), Class: str(h[1]), Tenant: str(h[2]),
			Busy: str(h[3]) == "busy", Hot: hots[i].Val(), LogService: str(h[4]),
		})
	}
	return out, nil
}

// Occupancy counts a class's instances across live agents.
type Occupancy struct {
	Class string
	// Warm: idle, unassigned. Active: idle, assigned to a tenant. Busy: claimed.
	Warm, Active, Busy int
}

// Occupancy summarises every class seen on live agents, sorted by class.
func (s *Store) Occupancy(ctx context.Context) ([]Occupancy, error) {
	agents, err := s.Agents(ctx)
	if err != nil {
		return nil, err
	}
	byClass := map[string]*Occupancy{}
	var order []string
	for _, a := range agents {
		insts, err := s.Instances(ctx, a.ID)
		if err != nil {
			return nil, err
		}
		for _, in := range insts {
			o := byClass[in.Class]
			if o == nil {
				o = &Occupancy{Class: in.Class}
				byClass[in.Class] = o
				order = append(order, in.Class)
			}
			switch {
			case in.Busy:
				o.Busy++
			case in.Tenant == "":
				o.Warm++
			default:
				o.Active++
			}
		}
	}
	sortClasses(order)
	out := make([]Occupancy, 0, len(order))
	for _, c := range order {
		out = append(out, *byClass[c])
	}
	return out, nil
}

// SubscribeFreed subscribes to FreedChannel (and the other channels
// named). The caller closes the PubSub.
func (s *Store) SubscribeFreed(ctx context.Context, more ...string) *redis.PubSub {
	return s.rdb.Subscribe(ctx, append([]string{s.FreedChannel()}, more...)...)
}

// SubscribeDemand subscribes to DemandChannel. The caller closes the PubSub.
func (s *Store) SubscribeDemand(ctx context.Context) *redis.PubSub {
	return s.rdb.Subscribe(ctx, s.DemandChannel())
}
