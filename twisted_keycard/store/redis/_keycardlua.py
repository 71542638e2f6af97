"""
The Lua scripts that keep issued keycards and leases in Redis, each run
atomically (C{EVALSHA}), so that bouncers racing on one Redis never exceed
a seat pool or a per-avatar cap.

Every script takes the key prefix as C{ARGV[1]}.  Numbers travel as the
strings Python wrote (Lua would round them when turning them back into
text); scores and expiries are POSIX times by the bouncers' clocks.

A keycard is a hash C{kc:ID}; its indexes are sorted sets scored by its
expiry: C{ix:a:AVATAR}, C{ix:r:REQUESTER}, C{ix:p:PARENT}, C{ix:f:FAMILY},
C{ix:l:LEASE}, C{kc:expiry}, and, while a client holds it,
C{ix:ha:AVATAR} and C{ix:s:POOL}, which the caps count.  Leases are the
sorted set C{leases}, scored by their end.
"""

from __future__ import annotations

#: The fields of a keycard's hash, in the order scripts return them.
FIELDS = ("id", "a", "r", "b", "t", "ad", "i", "d", "e", "p", "s", "h", "f", "l")

PRELUDE = """
local P = ARGV[1]
local FIELDS = {FIELD_NAMES}
local function extend(key, ttl)
  if redis.call('TTL', key) < tonumber(ttl) then
    redis.call('EXPIRE', key, ttl)
  end
end
local function load(id)
  local values = redis.call('HMGET', P .. 'kc:' .. id, unpack(FIELDS))
  local r = {}
  for i, name in ipairs(FIELDS) do r[name] = values[i] end
  return r, values
end
local function indexKeys(r)
  local keys = {P .. 'kc:expiry', P .. 'ix:a:' .. r.a}
  if r.r then table.insert(keys, P .. 'ix:r:' .. r.r) end
  if r.p then table.insert(keys, P .. 'ix:p:' .. r.p) end
  if r.f then table.insert(keys, P .. 'ix:f:' .. r.f) end
  if r.l then table.insert(keys, P .. 'ix:l:' .. r.l) end
  if r.h == '1' then
    table.insert(keys, P .. 'ix:ha:' .. r.a)
    if r.s then table.insert(keys, P .. 'ix:s:' .. r.s) end
  end
  return keys
end
local function index(r, ttl, cutoff)
  for _, key in ipairs(indexKeys(r)) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
    redis.call('ZADD', key, r.e, r.id)
    extend(key, ttl)
  end
end
local function remove(id)
  local r, values = load(id)
  if not r.id then
    redis.call('ZREM', P .. 'kc:expiry', id)
    return false
  end
  for _, key in ipairs(indexKeys(r)) do redis.call('ZREM', key, id) end
  redis.call('DEL', P .. 'kc:' .. id)
  return values
end
local function release(id)
  local r = load(id)
  if r.id and r.h == '1' then
    redis.call('ZREM', P .. 'ix:ha:' .. r.a, id)
    if r.s then redis.call('ZREM', P .. 'ix:s:' .. r.s, id) end
    redis.call('HSET', P .. 'kc:' .. id, 'h', '0')
    redis.call('HDEL', P .. 'kc:' .. id, 's')
    return true
  end
  return false
end
local function releaseLapsed(when)
  local released = 0
  for _, holder in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', when)) do
    local key = P .. 'ix:l:' .. holder
    for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      if release(id) then released = released + 1 end
    end
    redis.call('DEL', key)
    redis.call('ZREM', P .. 'leases', holder)
  end
  return released
end
""".replace("FIELD_NAMES", ", ".join(f"'{f}'" for f in FIELDS))

#: ARGV: prefix, TTL, cap per avatar or '', pool size or '', issue time,
#: index cutoff, then the record's fields and values.  Returns C{ok},
#: C{duplicate}, C{avatar} or C{pool}.
ADD = (
    PRELUDE
    + """
local ttl, perAvatar, poolSize, when, cutoff = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local r = {}
for i = 7, #ARGV, 2 do r[ARGV[i]] = ARGV[i + 1] end
local key = P .. 'kc:' .. r.id
if redis.call('EXISTS', key) == 1 then return 'duplicate' end
if perAvatar ~= '' or poolSize ~= '' then
  releaseLapsed(when)
  if perAvatar ~= '' and
     redis.call('ZCOUNT', P .. 'ix:ha:' .. r.a, '(' .. when, '+inf') >= tonumber(perAvatar) then
    return 'avatar'
  end
  if poolSize ~= '' and r.s and
     redis.call('ZCOUNT', P .. 'ix:s:' .. r.s, '(' .. when, '+inf') >= tonumber(poolSize) then
    return 'pool'
  end
end
local fields = {}
for i = 7, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', key, unpack(fields))
redis.call('EXPIRE', key, ttl)
index(r, ttl, cutoff)
return 'ok'
"""
)

#: ARGV: prefix, id.  Returns the removed record's fields, or nil.
REMOVE = PRELUDE + "return remove(ARGV[2])"

#: ARGV: prefix, id.  Returns the record's fields after, or nil.
RELEASE = (
    PRELUDE
    + """
release(ARGV[2])
local r, values = load(ARGV[2])
if not r.id then return false end
return values
"""
)

#: ARGV: prefix, id, new expiry, TTL.  Returns the record's fields, or nil.
RENEW = (
    PRELUDE
    + """
local id, expires, ttl = ARGV[2], ARGV[3], ARGV[4]
local r = load(id)
if not r.id then return false end
redis.call('HSET', P .. 'kc:' .. id, 'e', expires)
redis.call('EXPIRE', P .. 'kc:' .. id, ttl)
for _, key in ipairs(indexKeys(r)) do
  redis.call('ZADD', key, expires, id)
  extend(key, ttl)
end
local _, values = load(id)
return values
"""
)

#: ARGV: prefix, index key (after the prefix), min score, max score.
#: Returns the fields of each record in the index within those scores,
#: forgetting ids whose record expired.
SELECT = (
    PRELUDE
    + """
local index = P .. ARGV[2]
local found = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', index, ARGV[3], ARGV[4])) do
  local r, values = load(id)
  if r.id then table.insert(found, values) else redis.call('ZREM', index, id) end
end
return found
"""
)

#: ARGV: prefix, time, most to remove.  Returns {removed, looked at}.
FLUSH_EXPIRED = (
    PRELUDE
    + """
local ids = redis.call('ZRANGEBYSCORE', P .. 'kc:expiry', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
local removed = 0
for _, id in ipairs(ids) do
  if remove(id) then removed = removed + 1 end
end
return {removed, #ids}
"""
)

#: ARGV: prefix, cutoff (entries expired then are gone).  Returns the count.
COUNT = (
    PRELUDE
    + """
redis.call('ZREMRANGEBYSCORE', P .. 'kc:expiry', '-inf', ARGV[2])
return redis.call('ZCARD', P .. 'kc:expiry')
"""
)

#: ARGV: prefix, holder, end of the lease, TTL.  Returns 1 if it was on
#: record.
RENEW_LEASE = (
    PRELUDE
    + """
local known = redis.call('ZSCORE', P .. 'leases', ARGV[2])
redis.call('ZADD', P .. 'leases', ARGV[3], ARGV[2])
extend(P .. 'leases', ARGV[4])
if known then return 1 end
return 0
"""
)

#: ARGV: prefix, time.  Returns how many keycards were released.
RELEASE_LAPSED = PRELUDE + "return releaseLapsed(ARGV[2])"

#: ARGV: prefix, id, holder.  Returns the record's fields, or nil when it
#: is not held.
HOLD_UNDER = (
    PRELUDE
    + """
local id, holder = ARGV[2], ARGV[3]
local r = load(id)
if not r.id or r.h ~= '1' then return false end
if r.l then redis.call('ZREM', P .. 'ix:l:' .. r.l, id) end
redis.call('HSET', P .. 'kc:' .. id, 'l', holder)
local key = P .. 'ix:l:' .. holder
redis.call('ZADD', key, r.e, id)
extend(key, redis.call('TTL', P .. 'kc:' .. id))
local _, values = load(id)
return values
"""
)
