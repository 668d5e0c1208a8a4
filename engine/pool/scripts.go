package pool

import "github.com/redis/go-redis/v9"

// Every script gets the key prefix as KEYS[1]: all the keys it touches
// start with it and share its hash tag, so a script runs on the one node
// (Redis Cluster) that holds them.

// luaSets is a shared prelude. An idle instance is in the sets its hash
// says (idle_keys): a warming-pool one in warm:<class>; a tenant's one not
// configured for a logging service in active:<tenant>:<class> and
// hot:<vk> for each hot version; one configured for logging service L in
// actlog:<tenant>:<class>:<L>, actcfg:<tenant>:<class> and
// hotlog:<vk>:<L> (hotlogs:<vk> indexes the L of those). list and unlist
// add it to and remove it from them; drop(p, id) forgets it altogether.
const luaSets = `
local function idle_keys(p, id, index)
  local key = p..'inst:'..id
  local h = redis.call('HMGET', key, 'class', 'tenant', 'log')
  local class, tenant, log = h[1], h[2] or '', h[3] or ''
  local keys = {}
  if not class then return keys, nil end
  if tenant == '' then
    keys[1] = p..'warm:'..class
  elseif log == '' then
    keys[1] = p..'active:'..tenant..':'..class
  else
    keys[1] = p..'actlog:'..tenant..':'..class..':'..log
    keys[2] = p..'actcfg:'..tenant..':'..class
  end
  for _, v in ipairs(redis.call('SMEMBERS', key..':hot')) do
    if log == '' then
      table.insert(keys, p..'hot:'..v)
    else
      table.insert(keys, p..'hotlog:'..v..':'..log)
      if index then redis.call('SADD', p..'hotlogs:'..v, log) end
    end
  end
  return keys
end
-- inst_mem(p, class): an instance's memory in MB (fixed classes mN, or
-- its sub-pool's).
local function inst_mem(p, class)
  local m = string.match(class, '^m(%d+)$')
  if m then return tonumber(m) end
  local name = string.match(class, '^sp%-(.+)$')
  local sp = name and redis.call('HGET', p..'subpools', name)
  if sp then return tonumber(cjson.decode(sp)['memory_mb']) or 0 end
  return 0
end
-- unbusy(p, id): forget which function the main claim runs.
local function unbusy(p, id)
  local key = p..'inst:'..id
  local fk = redis.call('HGET', key, 'busyfn')
  if fk then redis.call('SREM', p..'busyfn:'..fk, id) end
  redis.call('HDEL', key, 'busyfn', 'busyvid', 'busymem', 'busylog')
end
local function list(p, id)
  for _, k in ipairs(idle_keys(p, id, true)) do redis.call('SADD', k, id) end
end
local function unlist(p, id)
  for _, k in ipairs(idle_keys(p, id, false)) do redis.call('SREM', k, id) end
end
local function drop(p, id)
  unlist(p, id)
  local h = redis.call('HMGET', p..'inst:'..id, 'agent', 'class', 'busyfn')
  local agent, class = h[1], h[2]
  if h[3] then redis.call('SREM', p..'busyfn:'..h[3], id) end
  if class then redis.call('SREM', p..'members:'..class, id) end
  if agent then redis.call('SREM', p..'agent:'..agent..':insts', id) end
  redis.call('ZREM', p..'busy', id)
  redis.call('DEL', p..'inst:'..id, p..'inst:'..id..':hot')
end
`

// claimScript: KEYS = prefix; ARGV = tenant, class, version key, lease expiry
// ms, claim token (random: a counter in Redis would start again if Redis lost
// its data, and an old holder's token could match a new claim), logging
// service id (empty for none), the function's key (tenant/function), the
// version's configuration id, the function's memory in MB, the waiter's
// ticket (empty for none: see enqueueScript). A ticket no longer in its
// queue (its lease lapsed) returns {”, ”, 'noticket'}.
// Order: with a logging service, an idle instance configured for it where
// the version is hot, then one configured for it; then (any claim) an idle
// instance of the tenant configured for no service where the version is
// hot (no code delivery, no spawn); a busy instance running another
// configuration of the same function (an older version) whose memory
// holds this one too: claimed beside its claim, the new code starts in a
// second container there while the old one finishes ('beside'); an idle
// instance of the tenant configured for no service (no tenant switch, its
// runtime is warm); a warming-pool instance of the class; last, an
// instance of the tenant configured for another service (configured
// again). Instances whose agent's heartbeat key has expired are dropped as
// they are met.
var claimScript = redis.NewScript(luaSets + `
local p, tenant, class, vk, lease, token, log = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] or ''
local fk, vid, need = ARGV[7] or '', ARGV[8] or '', tonumber(ARGV[9] or '0')
local ticket = ARGV[10] or ''
-- The queue of the tenant's invocations waiting for the class, shared by
-- every emberd: while it has waiters only its head may claim (a newcomer
-- without a ticket waits behind them). Tickets whose lease lapsed (their
-- emberd died or lost Redis) go first; Redis's clock, not an emberd's.
local wq, wd = p..'wait:'..class..':'..tenant, p..'waitdl:'..class..':'..tenant
if redis.call('EXISTS', wq) == 1 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local old = redis.call('ZRANGE', wq, 0, 0)[1]
  for _, x in ipairs(redis.call('ZRANGEBYSCORE', wd, '-inf', now)) do
    redis.call('ZREM', wq, x)
    redis.call('ZREM', wd, x)
  end
  local head = redis.call('ZRANGE', wq, 0, 0)[1]
  if head and head ~= old then
    -- a lapsed head went: the next one's emberd tries at once
    redis.call('PUBLISH', p..'freed', class..' '..tenant)
  end
  if ticket ~= '' and not redis.call('ZSCORE', wq, ticket) then return {'', '', 'noticket'} end
  if head and head ~= ticket then return false end
elseif ticket ~= '' then
  return {'', '', 'noticket'}
end
-- served: the head leaves the queue with its instance; the next head, on
-- whichever emberd, tries at once (another instance may be idle).
local function served()
  if ticket == '' then return end
  redis.call('ZREM', wq, ticket)
  redis.call('ZREM', wd, ticket)
  if redis.call('EXISTS', wq) == 1 then redis.call('PUBLISH', p..'freed', class..' '..tenant) end
end
local function alive(id)
  local agent = redis.call('HGET', p..'inst:'..id, 'agent')
  if agent and redis.call('EXISTS', p..'agent:'..agent) == 1 then return agent end
  drop(p, id)
  return nil
end
local function take(id, agent, kind)
  unlist(p, id)
  local key = p..'inst:'..id
  redis.call('HSET', key, 'state', 'busy', 'tenant', tenant, 'claim', token)
  if fk ~= '' then
    redis.call('HSET', key, 'busyfn', fk, 'busyvid', vid, 'busymem', need, 'busylog', log)
    redis.call('SADD', p..'busyfn:'..fk, id)
  end
  redis.call('ZADD', p..'busy', lease, id)
  served()
  return {id, agent, kind}
end
-- beside: a busy instance running another configuration of the function.
local function beside()
  if fk == '' or vid == '' or need <= 0 then return nil end
  local set = p..'busyfn:'..fk
  for _, id in ipairs(redis.call('SRANDMEMBER', set, 4)) do
    local key = p..'inst:'..id
    -- busylog: the logging service the main claim runs with (the agent
    -- never switches it for the claim beside).
    local h = redis.call('HMGET', key, 'class', 'tenant', 'state', 'side', 'busyvid', 'busymem', 'busylog', 'busyfn')
    if h[3] ~= 'busy' or h[8] ~= fk then
      redis.call('SREM', set, id) -- stale: the claim that ran the function is gone
    elseif h[1] == class and h[2] == tenant and not h[4] and h[5] ~= vid and (h[7] or '') == log
        and inst_mem(p, class) - tonumber(h[6] or '0') >= need then
      local agent = alive(id)
      if agent then
        redis.call('HSET', key, 'side', token)
        redis.call('ZADD', p..'busy', 'GT', lease, id)
        served()
        return {id, agent, 'beside'}
      end
    end
  end
  return nil
end
-- {set, kind, the instance's logging service there ('*': any but none)}
local sets = {}
if log ~= '' then
  if vk ~= '' then table.insert(sets, {p..'hotlog:'..vk..':'..log, 'hot', log}) end
  table.insert(sets, {p..'actlog:'..tenant..':'..class..':'..log, 'active', log})
end
if vk ~= '' and log == '' then table.insert(sets, {p..'hot:'..vk, 'hot', ''}) end
table.insert(sets, {'beside'})
if vk ~= '' and log ~= '' then table.insert(sets, {p..'hot:'..vk, 'hot', ''}) end
table.insert(sets, {p..'active:'..tenant..':'..class, 'active', ''})
table.insert(sets, {p..'warm:'..class, 'warm', ''})
table.insert(sets, {p..'actcfg:'..tenant..':'..class, 'active', '*'})
for _, s in ipairs(sets) do
  if s[1] == 'beside' then
    local r = beside()
    if r then return r end
  else
    -- From the tenant's active pool, an instance where no version is hot is
    -- taken first: the hot ones stay for their versions' next invocations
    -- (up to 3 are passed over, then the first of them is taken).
    local passed = {}
    while true do
      local id = redis.call('SPOP', s[1])
      if not id then break end
      local h = redis.call('HMGET', p..'inst:'..id, 'class', 'tenant', 'state', 'log')
      local ilog = h[4] or ''
      -- A member whose hash disagrees (stale entry) is skipped: the set was the only trace.
      local fits = (s[3] == '*' and ilog ~= '') or (s[3] ~= '*' and ilog == s[3])
      if h[1] == class and h[3] == 'idle' and fits and (s[2] == 'warm' or h[2] == tenant) then
        local agent = alive(id)
        if agent then
          if s[2] == 'active' and #passed < 3 and redis.call('SCARD', p..'inst:'..id..':hot') > 0 then
            table.insert(passed, {id, agent})
          else
            for _, x in ipairs(passed) do redis.call('SADD', s[1], x[1]) end
            return take(id, agent, s[2])
          end
        end
      end
    end
    if #passed > 0 then
      for i = 2, #passed do redis.call('SADD', s[1], passed[i][1]) end
      return take(passed[1][1], passed[1][2], s[2])
    end
  end
end
return false
`)

// claimInstanceScript: KEYS = prefix; ARGV = instance id, tenant, lease
// expiry ms, claim token. Takes that instance for the tenant: idle, as
// the main claim; busy, beside the main claim when no other claim is
// beside it (false otherwise). Returns {agent, kind}; {”, ”} when the
// instance, its agent or the tenant's hold on it is gone.
var claimInstanceScript = redis.NewScript(luaSets + `
local p, id, tenant, lease, token = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p..'inst:'..id
local h = redis.call('HMGET', key, 'agent', 'tenant', 'state', 'side')
if not h[1] or h[2] ~= tenant or redis.call('EXISTS', p..'agent:'..h[1]) == 0 then return {'', ''} end
if h[3] == 'idle' then
  unlist(p, id)
  redis.call('HSET', key, 'state', 'busy', 'claim', token)
  redis.call('ZADD', p..'busy', lease, id)
  return {h[1], 'main'}
end
if h[4] then return false end
redis.call('HSET', key, 'side', token)
redis.call('ZADD', p..'busy', 'GT', lease, id)
return {h[1], 'side'}
`)

// enqueueScript: KEYS = prefix; ARGV = class, tenant, ticket id, lease ms.
// Puts the ticket in the tenant's queue for the class after every earlier
// one, announces it on 'wanted' (held claims are given back) and returns
// its place (a number that only grows). Its lease, on Redis's clock, is
// renewed with renewScript.
var enqueueScript = redis.NewScript(`
local p, class, tenant, id, lease = KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local n = redis.call('INCR', p..'waitseq')
local t = redis.call('TIME')
redis.call('ZADD', p..'wait:'..class..':'..tenant, n, id)
redis.call('ZADD', p..'waitdl:'..class..':'..tenant, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + lease, id)
redis.call('PUBLISH', p..'wanted', class..' '..tenant)
return n
`)

// renewScript: KEYS = prefix; ARGV = class, tenant, ticket id, its place,
// lease ms. Extends the ticket's lease, putting it back at its place if
// it lapsed meanwhile, and announces the waiter again on 'wanted'.
var renewScript = redis.NewScript(`
local p, class, tenant, id, n, lease = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local t = redis.call('TIME')
redis.call('ZADD', p..'wait:'..class..':'..tenant, n, id)
redis.call('ZADD', p..'waitdl:'..class..':'..tenant, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + lease, id)
redis.call('PUBLISH', p..'wanted', class..' '..tenant)
return 1
`)

// dequeueScript: KEYS = prefix; ARGV = class, tenant, ticket. The ticket
// leaves its queue (its invocation gave up); if it was the head, the next
// head tries at once. 1 if it was there.
var dequeueScript = redis.NewScript(`
local p, class, tenant, t = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local wq, wd = p..'wait:'..class..':'..tenant, p..'waitdl:'..class..':'..tenant
local head = redis.call('ZRANGE', wq, 0, 0)[1]
local n = redis.call('ZREM', wq, t)
redis.call('ZREM', wd, t)
if n == 1 and head == t and redis.call('EXISTS', wq) == 1 then
  redis.call('PUBLISH', p..'freed', class..' '..tenant)
end
return n
`)

// releaseScript: KEYS = prefix; ARGV = id, claim token, version key (empty
// for none), keep ('1' or '0'), logging service id the instance is now
// configured for (empty leaves its configuration as it was). The token is
// the instance's main claim or the one beside it; the instance goes back
// to the pool when neither holds it any more. keep=0 means the instance
// is unusable (its agent said so): drop it. A token that holds the
// instance neither way (its lease expired and it was claimed again, or it
// was released already) changes nothing: -1.
var releaseScript = redis.NewScript(luaSets + `
local p, id, tok, vk, keep, log = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] or ''
local key = p..'inst:'..id
local h = redis.call('HMGET', key, 'agent', 'class', 'tenant', 'claim', 'side')
if not h[1] then return 0 end
local other
if h[4] == tok then
  redis.call('HDEL', key, 'claim')
  unbusy(p, id)
  other = h[5]
elseif h[5] == tok then
  redis.call('HDEL', key, 'side')
  other = h[4]
else
  return -1
end
if other then -- the other claim still holds it: an unusable instance goes at the last release
  if keep ~= '1' then redis.call('HSET', key, 'dropme', '1') end
  if keep == '1' and log ~= '' then redis.call('HSET', key, 'log', log) end
  if keep == '1' and vk ~= '' then redis.call('SADD', key..':hot', vk) end
  return 1
end
if keep ~= '1' or redis.call('HGET', key, 'dropme') or redis.call('EXISTS', p..'agent:'..h[1]) == 0 then
  drop(p, id)
  return 0
end
if log ~= '' then redis.call('HSET', key, 'log', log) end
if vk ~= '' then redis.call('SADD', key..':hot', vk) end
redis.call('ZREM', p..'busy', id)
redis.call('HSET', key, 'state', 'idle')
list(p, id)
redis.call('PUBLISH', p..'freed', h[2]..' '..h[3])
return 1
`)

// addScript: KEYS = prefix; ARGV = id, agent, class.
var addScript = redis.NewScript(luaSets + `
local p, id, agent, class = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
redis.call('HSET', p..'inst:'..id, 'agent', agent, 'class', class, 'tenant', '', 'state', 'idle')
unbusy(p, id)
redis.call('HDEL', p..'inst:'..id, 'claim', 'log', 'side', 'dropme')
redis.call('ZREM', p..'busy', id)
redis.call('SADD', p..'agent:'..agent..':insts', id)
redis.call('SADD', p..'members:'..class, id)
redis.call('ZREM', p..'starting:'..class, id)
list(p, id)
redis.call('PUBLISH', p..'freed', class)
return 1
`)

// reserveMemberScript: KEYS = prefix; ARGV = class, id, max, for min warm
// ('1'|'0'), min warm, now ms, deadline ms. Books a starting instance of a
// sub-pool while its instances (live and starting) number fewer than max
// and, for min warm, fewer than min warm.
// Members whose agent is gone are dropped first.
var reserveMemberScript = redis.NewScript(luaSets + `
local p, class, id, maxn, mw, minwarm = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local starting = p..'starting:'..class
redis.call('ZREMRANGEBYSCORE', starting, '-inf', ARGV[6])
for _, m in ipairs(redis.call('SMEMBERS', p..'members:'..class)) do
  local agent = redis.call('HGET', p..'inst:'..m, 'agent')
  if not agent then
    redis.call('SREM', p..'members:'..class, m)
  elseif redis.call('EXISTS', p..'agent:'..agent) == 0 then
    drop(p, m)
  end
end
local n = redis.call('SCARD', p..'members:'..class) + redis.call('ZCARD', starting)
if n >= maxn then return 0 end
if mw == '1' and n >= minwarm then return 0 end
redis.call('ZADD', starting, ARGV[7], id)
return 1
`)

// extendBookingScript: KEYS = prefix; ARGV = class, id, deadline ms. Moves
// a booking's lapse; 0 if it lapsed.
var extendBookingScript = redis.NewScript(`
local starting = KEYS[1]..'starting:'..ARGV[1]
if not redis.call('ZSCORE', starting, ARGV[2]) then return 0 end
redis.call('ZADD', starting, ARGV[3], ARGV[2])
return 1
`)

// addActiveScript: KEYS = prefix; ARGV = id, agent, class, tenant, hot version
// keys... Puts back an instance assigned to tenant (after Redis lost it),
// idle, with its hot versions and no logging service (the next claim that
// names one configures it).
var addActiveScript = redis.NewScript(luaSets + `
local p, id, agent, class, tenant = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = p..'inst:'..id
unlist(p, id)
redis.call('HSET', key, 'agent', agent, 'class', class, 'tenant', tenant, 'state', 'idle')
unbusy(p, id)
redis.call('HDEL', key, 'claim', 'log', 'side', 'dropme')
redis.call('ZREM', p..'busy', id)
redis.call('SADD', p..'agent:'..agent..':insts', id)
redis.call('SADD', p..'members:'..class, id)
for i = 5, #ARGV do redis.call('SADD', key..':hot', ARGV[i]) end
list(p, id)
redis.call('PUBLISH', p..'freed', class..' '..tenant)
return 1
`)

// retireFunctionScript: KEYS = prefix; ARGV = message, version keys... Forgets
// that the versions are hot anywhere and tells agents (on the retire
// channel) to stop their containers.
var retireFunctionScript = redis.NewScript(`
local p, msg = KEYS[1], ARGV[1]
for i = 2, #ARGV do
  local vk = ARGV[i]
  local sets = {p..'hot:'..vk}
  for _, l in ipairs(redis.call('SMEMBERS', p..'hotlogs:'..vk)) do
    table.insert(sets, p..'hotlog:'..vk..':'..l)
  end
  for _, set in ipairs(sets) do
    for _, id in ipairs(redis.call('SMEMBERS', set)) do
      redis.call('SREM', p..'inst:'..id..':hot', vk)
    end
    redis.call('DEL', set)
  end
  redis.call('DEL', p..'hotlogs:'..vk)
end
redis.call('PUBLISH', p..'retire', msg)
return 1
`)

// retireScript: KEYS = prefix; ARGV = id, force. Drops the instance if idle (or
// force=1); returns 1 if dropped or already gone, 0 if busy.
var retireScript = redis.NewScript(luaSets + `
local p, id, force = KEYS[1], ARGV[1], ARGV[2]
local state = redis.call('HGET', p..'inst:'..id, 'state')
if not state then return 1 end
if state == 'busy' and force ~= '1' then return 0 end
drop(p, id)
return 1
`)

// dropHotScript: KEYS = prefix; ARGV = id, version key. Forgets that a version is
// hot on an instance (its container was stopped).
var dropHotScript = redis.NewScript(`
local p, id, vk = KEYS[1], ARGV[1], ARGV[2]
redis.call('SREM', p..'inst:'..id..':hot', vk)
redis.call('SREM', p..'hot:'..vk, id)
local log = redis.call('HGET', p..'inst:'..id, 'log')
if log then redis.call('SREM', p..'hotlog:'..vk..':'..log, id) end
return 1
`)

// removeAgentScript: KEYS = prefix; ARGV = agent id. Drops the agent and all its instances.
var removeAgentScript = redis.NewScript(luaSets + `
local p, agent = KEYS[1], ARGV[1]
for _, id in ipairs(redis.call('SMEMBERS', p..'agent:'..agent..':insts')) do
  drop(p, id)
end
redis.call('DEL', p..'agent:'..agent, p..'agent:'..agent..':insts')
redis.call('SREM', p..'agents', agent)
return 1
`)

// expireLeasesScript: KEYS = prefix; ARGV = now ms. Busy instances whose lease ran
// out (their claimer died) become idle again, keeping their hot versions.
var expireLeasesScript = redis.NewScript(luaSets + `
local p, now = KEYS[1], ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p..'busy', '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(ids) do
  redis.call('ZREM', p..'busy', id)
  local key = p..'inst:'..id
  local h = redis.call('HMGET', key, 'class', 'tenant')
  if h[1] then
    redis.call('HDEL', key, 'claim', 'side')
    unbusy(p, id)
    if redis.call('HGET', key, 'dropme') then -- a claim found it unusable
      drop(p, id)
    else
      redis.call('HSET', key, 'state', 'idle')
      list(p, id)
      if h[2] and h[2] ~= '' then
        redis.call('PUBLISH', p..'freed', h[1]..' '..h[2])
      else
        redis.call('PUBLISH', p..'freed', h[1])
      end
    end
  end
end
return #ids
`)

// idleHotScript: KEYS = prefix; ARGV = version key. How many idle
// instances hold it hot, configured for a logging service or not.
var idleHotScript = redis.NewScript(`
local p, vk = KEYS[1], ARGV[1]
local n = redis.call('SCARD', p..'hot:'..vk)
for _, l in ipairs(redis.call('SMEMBERS', p..'hotlogs:'..vk)) do
  n = n + redis.call('SCARD', p..'hotlog:'..vk..':'..l)
end
return n
`)

// reportUsedScript: KEYS = the agent's key; ARGV = used memory, used mCPU.
var reportUsedScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'used_mem', ARGV[1], 'used_mcpu', ARGV[2])
return 1
`)
