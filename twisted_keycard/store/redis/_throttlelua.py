"""
The Lua scripts that count failed logins and reservations in Redis.

The failures of a key (C{account:NAME}, C{address:HOST}) are the sorted
set C{fail:KEY}, scored by time; C{fail:all} holds every failure as
C{KEY NUL ID}, for flushing.  A reservation is the hash C{resv:ID} (C{w}
its time, C{1}..C{n} its keys), an entry of C{resv:all}, and an entry of
C{held:KEY} for each of its keys.  Every key expires after the longest
throttling window, and each write drops what is older.
"""

from __future__ import annotations

_PRELUDE = """
local P = ARGV[1]
local function extend(key, ttl)
  if redis.call('TTL', key) < tonumber(ttl) then redis.call('EXPIRE', key, ttl) end
end
local function fail(key, when, id, ttl, cutoff)
  local k = P .. 'fail:' .. key
  redis.call('ZREMRANGEBYSCORE', k, '-inf', cutoff)
  redis.call('ZADD', k, when, id)
  redis.call('ZADD', P .. 'fail:all', when, key .. '\\0' .. id)
  extend(k, ttl)
  extend(P .. 'fail:all', ttl)
end
local function unreserve(id)
  local values = redis.call('HGETALL', P .. 'resv:' .. id)
  if #values == 0 then return nil end
  local r = {}
  for i = 1, #values, 2 do r[values[i]] = values[i + 1] end
  local keys = {}
  for i = 1, tonumber(r.n) do
    table.insert(keys, r[tostring(i)])
    redis.call('ZREM', P .. 'held:' .. r[tostring(i)], id)
  end
  redis.call('ZREM', P .. 'resv:all', id)
  redis.call('DEL', P .. 'resv:' .. id)
  return keys, r.w
end
"""

#: ARGV: prefix, time, a unique id, TTL, cutoff, then the keys.
RECORD_FAILURE = (
    _PRELUDE
    + """
for i = 6, #ARGV do fail(ARGV[i], ARGV[2], ARGV[3] .. ':' .. i, ARGV[4], ARGV[5]) end
return 1
"""
)

#: ARGV: prefix, since, then the keys.  Returns each key's count.
FAILURES_SINCE = """
local counts = {}
for i = 3, #ARGV do
  table.insert(counts, redis.call('ZCOUNT', ARGV[1] .. 'fail:' .. ARGV[i], '(' .. ARGV[2], '+inf'))
end
return counts
"""

#: ARGV: prefix, reservation id, since, time, TTL, then each key and its
#: limit.  Returns 1 if reserved, 0 if a key is at its limit.
RESERVE = (
    _PRELUDE
    + """
local id, since, when, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
for i = 6, #ARGV, 2 do
  local taken = redis.call('ZCOUNT', P .. 'fail:' .. ARGV[i], '(' .. since, '+inf')
    + redis.call('ZCOUNT', P .. 'held:' .. ARGV[i], '(' .. since, '+inf')
  if taken >= tonumber(ARGV[i + 1]) then return 0 end
end
local fields, n = {'w', when}, 0
for i = 6, #ARGV, 2 do
  n = n + 1
  table.insert(fields, tostring(n))
  table.insert(fields, ARGV[i])
  local held = P .. 'held:' .. ARGV[i]
  redis.call('ZADD', held, when, id)
  extend(held, ttl)
end
table.insert(fields, 'n')
table.insert(fields, tostring(n))
redis.call('HSET', P .. 'resv:' .. id, unpack(fields))
redis.call('EXPIRE', P .. 'resv:' .. id, ttl)
redis.call('ZADD', P .. 'resv:all', when, id)
extend(P .. 'resv:all', ttl)
return 1
"""
)

#: ARGV: prefix, reservation id, '1' if failed, a unique id, TTL, cutoff.
SETTLE = (
    _PRELUDE
    + """
local keys, when = unreserve(ARGV[2])
if keys and ARGV[3] == '1' then
  for i, key in ipairs(keys) do fail(key, when, ARGV[4] .. ':' .. i, ARGV[5], ARGV[6]) end
end
return 1
"""
)

#: ARGV: prefix, time, most to forget.  Returns {forgotten, looked at}.
FLUSH_FAILURES = (
    _PRELUDE
    + """
local before, limit = ARGV[2], ARGV[3]
local members = redis.call('ZRANGEBYSCORE', P .. 'fail:all', '-inf', before, 'LIMIT', 0, limit)
for _, member in ipairs(members) do
  local cut = #member - string.find(string.reverse(member), '\\0', 1, true) + 1
  redis.call('ZREM', P .. 'fail:' .. string.sub(member, 1, cut - 1), string.sub(member, cut + 1))
  redis.call('ZREM', P .. 'fail:all', member)
end
local ids = redis.call('ZRANGEBYSCORE', P .. 'resv:all', '-inf', before, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  if not unreserve(id) then redis.call('ZREM', P .. 'resv:all', id) end
end
return {#members + #ids, #members + #ids}
"""
)
