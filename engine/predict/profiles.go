package predict

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Profile is what Ember learned about one function following another in a
// tenant: how often, after how long, and how well predicting it worked.
// Counts decay with the store's half-life, so they are weights of recent
// runs rather than totals.
type Profile struct {
	Tenant string
	// From is the function whose runs are followed by runs of To.
	From, To string
	// Qualifier is what To's invocations asked for (an alias, a version
	// or "" for $LATEST), as last seen.
	Qualifier string
	// Runs of From and Follows (runs of To caused by one of From), decayed.
	Runs, Follows float64
	// Delay is the typical time from From's handler start to To's.
	Delay time.Duration
	// Load is the typical time a prediction took to load To ahead.
	Load time.Duration
	// Predictions loaded To ahead; Hits are those whose container's first
	// invocation came (decayed like Runs).
	Predictions, Hits float64
}

// Probability is the share of From's runs that To followed.
func (p Profile) Probability() float64 {
	if p.Runs <= 0 {
		return 0
	}
	return min(p.Follows/p.Runs, 1)
}

// Store keeps task profiles in Redis: a hash per tenant,
// PREFIX profiles:TENANT (and the set PREFIX profiled of those tenants), with a field per function ("run:F") and per
// pair ("edge:F:G") holding JSON. Updates arrive in batches (Apply) and
// decay what was there first.
type Store struct {
	rdb      redis.UniversalClient
	prefix   string
	halfLife time.Duration
}

// NewStore returns a store under prefix (it must contain a hash tag, e.g.
// "{ember}:"), whose counts halve every halfLife.
func NewStore(rdb redis.UniversalClient, prefix string, halfLife time.Duration) (*Store, error) {
	if rdb == nil || !strings.Contains(prefix, "{") || halfLife <= 0 {
		return nil, errors.New("predict: a store needs Redis, a prefix with a hash tag and a positive half-life")
	}
	return &Store{rdb: rdb, prefix: prefix, halfLife: halfLife}, nil
}

func (s *Store) key(tenant string) string { return s.prefix + "profiles:" + tenant }

// entry is one field's JSON: s (runs or follows), p and h (predictions,
// hits), d and l (delay and load in ms, moving averages), q (qualifier),
// at (unix ms of the last update, from which the counts decay).
type entry struct {
	S  float64 `json:"s"`
	P  float64 `json:"p,omitempty"`
	H  float64 `json:"h,omitempty"`
	D  float64 `json:"d,omitempty"`
	L  float64 `json:"l,omitempty"`
	Q  string  `json:"q,omitempty"`
	At int64   `json:"at"`
}

// delta is a batch of increments for one field: counts add up, d and l are
// sums over dn and ln samples.
type delta struct {
	S  float64 `json:"s,omitempty"`
	P  float64 `json:"p,omitempty"`
	H  float64 `json:"h,omitempty"`
	D  float64 `json:"d,omitempty"`
	DN float64 `json:"dn,omitempty"`
	L  float64 `json:"l,omitempty"`
	LN float64 `json:"ln,omitempty"`
	Q  string  `json:"q,omitempty"`
}

// applyScript: KEYS = prefix; ARGV = now ms, half-life ms, then triples of
// tenant, field, delta JSON. Each field decays to now, then adds its delta;
// delays and loads are moving averages (a fifth for each new batch).
var applyScript = redis.NewScript(`
local p, now, hl = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
  local key, field, inc = p..'profiles:'..ARGV[i], ARGV[i+1], cjson.decode(ARGV[i+2])
  local raw = redis.call('HGET', key, field)
  local cur = {}
  if raw then cur = cjson.decode(raw) end
  local f = 1
  if cur.at then f = math.pow(0.5, math.max(0, now - cur.at) / hl) end
  for _, k in ipairs({'s', 'p', 'h'}) do cur[k] = (cur[k] or 0) * f + (inc[k] or 0) end
  if inc.dn and inc.dn > 0 then
    local d = (inc.d or 0) / inc.dn
    if cur.d then cur.d = cur.d * 0.8 + d * 0.2 else cur.d = d end
  end
  if inc.ln and inc.ln > 0 then
    local l = (inc.l or 0) / inc.ln
    if cur.l then cur.l = cur.l * 0.8 + l * 0.2 else cur.l = l end
  end
  if inc.q then cur.q = inc.q end
  cur.at = now
  redis.call('HSET', key, field, cjson.encode(cur))
  redis.call('SADD', p..'profiled', ARGV[i])
end
return 1
`)

// batch is increments waiting for Apply, by tenant and field.
type batch map[string]map[string]*delta

func (b batch) field(tenant, field string) *delta {
	t := b[tenant]
	if t == nil {
		t = map[string]*delta{}
		b[tenant] = t
	}
	d := t[field]
	if d == nil {
		d = &delta{}
		t[field] = d
	}
	return d
}

func runField(fn string) string        { return "run:" + fn }
func edgeField(from, to string) string { return "edge:" + from + ":" + to }

// Apply adds a batch of increments at now.
func (s *Store) Apply(ctx context.Context, now time.Time, b batch) error {
	if len(b) == 0 {
		return nil
	}
	args := []any{now.UnixMilli(), s.halfLife.Milliseconds()}
	for tenant, fields := range b {
		for f, d := range fields {
			js, err := json.Marshal(d)
			if err != nil {
				return err
			}
			args = append(args, tenant, f, js)
		}
	}
	if err := applyScript.Run(ctx, s.rdb, []string{s.prefix}, args...).Err(); err != nil {
		return fmt.Errorf("predict: update profiles: %w", err)
	}
	return nil
}

// forgotten is the decayed weight below which a field is deleted as read.
const forgotten = 0.01

// Profiles reads tenant's profiles, decayed to now, most likely first.
// Fields decayed to nothing are deleted.
func (s *Store) Profiles(ctx context.Context, tenant string, now time.Time) ([]Profile, error) {
	all, err := s.rdb.HGetAll(ctx, s.key(tenant)).Result()
	if err != nil {
		return nil, fmt.Errorf("predict: read profiles of %s: %w", tenant, err)
	}
	decay := func(e entry) float64 {
		return math.Pow(0.5, float64(max(0, now.UnixMilli()-e.At))/float64(s.halfLife.Milliseconds()))
	}
	runs := map[string]float64{}
	var edges []Profile
	var stale []string
	for field, raw := range all {
		var e entry
		if json.Unmarshal([]byte(raw), &e) != nil {
			stale = append(stale, field)
			continue
		}
		f := decay(e)
		if e.S*f < forgotten && e.P*f < forgotten {
			stale = append(stale, field)
			continue
		}
		if fn, ok := strings.CutPrefix(field, "run:"); ok {
			runs[fn] = e.S * f
			continue
		}
		from, to, ok := strings.Cut(strings.TrimPrefix(field, "edge:"), ":")
		if !ok {
			stale = append(stale, field)
			continue
		}
		edges = append(edges, Profile{Tenant: tenant, From: from, To: to, Qualifier: e.Q, Follows: e.S * f,
			Delay: time.Duration(e.D * float64(time.Millisecond)), Load: time.Duration(e.L * float64(time.Millisecond)),
			Predictions: e.P * f, Hits: e.H * f})
	}
	for i := range edges {
		edges[i].Runs = runs[edges[i].From]
	}
	sort.Slice(edges, func(i, j int) bool {
		if pi, pj := edges[i].Probability(), edges[j].Probability(); pi != pj {
			return pi > pj
		}
		return edges[i].From+":"+edges[i].To < edges[j].From+":"+edges[j].To
	})
	if len(stale) > 0 {
		// Best effort: a field updated meanwhile is re-created by its next batch.
		_ = s.rdb.HDel(ctx, s.key(tenant), stale...).Err()
		if len(stale) == len(all) {
			_ = s.rdb.SRem(ctx, s.prefix+"profiled", tenant).Err()
		}
	}
	return edges, nil
}

// Tenants lists the tenants that have profiles.
func (s *Store) Tenants(ctx context.Context) ([]string, error) {
	out, err := s.rdb.SMembers(ctx, s.prefix+"profiled").Result()
	if err != nil {
		return nil, fmt.Errorf("predict: list profiles: %w", err)
	}
	sort.Strings(out)
	return out, nil
}
