"""
The Lua scripts that keep revocations and the keyring in Redis.

A revocation is a hash C{rev:ID} (C{e} expiry, C{at} revocation time,
C{why}) that Redis expires when the keycard would have expired anyway, and
an entry of C{rev:expiry}.  Each revocation written (or extended) is also
appended to the stream C{rev:log}, which other bouncers read from their
cursor; entries leave the stream's head once their revocation has expired,
so it holds the history of the revocations in force.  Every change is
published on the store's channel, so that followers read it at once.
"""

from __future__ import annotations

_PRELUDE = """
local P = ARGV[1]
local function trimLog(now)
  local dead = {}
  for _, entry in ipairs(redis.call('XRANGE', P .. 'rev:log', '-', '+', 'COUNT', 100)) do
    local fields, expires = entry[2], nil
    for i = 1, #fields, 2 do
      if fields[i] == 'e' then expires = fields[i + 1] end
    end
    if tonumber(expires) > tonumber(now) then break end
    table.insert(dead, entry[1])
  end
  if #dead > 0 then redis.call('XDEL', P .. 'rev:log', unpack(dead)) end
end
"""

#: ARGV: prefix, channel, time, cutoff, then id, expiry, time revoked,
#: reason and TTL of each revocation.  Returns how many ids were new.
REVOKE = (
    _PRELUDE
    + """
local channel, now, cutoff = ARGV[2], ARGV[3], ARGV[4]
local added, written = 0, 0
for i = 5, #ARGV, 5 do
  local id, expires, at, why, ttl = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local key = P .. 'rev:' .. id
  local known = redis.call('HGET', key, 'e')
  if not known or tonumber(known) < tonumber(expires) then
    if not known then added = added + 1 end
    written = written + 1
    redis.call('HSET', key, 'e', expires, 'at', at, 'why', why)
    redis.call('EXPIRE', key, ttl)
    redis.call('ZADD', P .. 'rev:expiry', expires, id)
    if redis.call('TTL', P .. 'rev:expiry') < tonumber(ttl) then
      redis.call('EXPIRE', P .. 'rev:expiry', ttl)
    end
    redis.call('XADD', P .. 'rev:log', '*', 'k', id, 'e', expires, 'at', at, 'why', why)
  end
end
redis.call('ZREMRANGEBYSCORE', P .. 'rev:expiry', '-inf', cutoff)
trimLog(now)
if written > 0 then redis.call('PUBLISH', channel, 'revoked') end
return added
"""
)

#: ARGV: prefix, then ids.  Returns those that are revoked.
REVOKED = """
local found = {}
for i = 2, #ARGV do
  if redis.call('EXISTS', ARGV[1] .. 'rev:' .. ARGV[i]) == 1 then
    table.insert(found, ARGV[i])
  end
end
return found
"""

#: ARGV: prefix, then ids.  Returns {id, expiry, time revoked, reason} for
#: each id that is revoked.
REVOCATIONS_OF = """
local P = ARGV[1]
local found = {}
for i = 2, #ARGV do
  local values = redis.call('HMGET', P .. 'rev:' .. ARGV[i], 'e', 'at', 'why')
  if values[1] then
    table.insert(found, {ARGV[i], values[1], values[2], values[3]})
  end
end
return found
"""

#: ARGV: prefix, time, most to remove.  Returns {removed}.
FLUSH_REVOCATIONS = (
    _PRELUDE
    + """
local ids = redis.call('ZRANGEBYSCORE', P .. 'rev:expiry', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do
  redis.call('DEL', P .. 'rev:' .. id)
  redis.call('ZREM', P .. 'rev:expiry', id)
end
trimLog(ARGV[2])
return #ids
"""
)

#: ARGV: prefix, channel, then each key's id and JSON.
SAVE_KEYRING = """
local P = ARGV[1]
redis.call('DEL', P .. 'keyring')
local fields = {}
for i = 3, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', P .. 'keyring', unpack(fields))
redis.call('INCR', P .. 'keyring:version')
redis.call('PUBLISH', ARGV[2], 'keyring')
return 1
"""

#: ARGV: prefix, a fresh secret.  Returns the stored secret: the first
#: one written by any process.
MOCK_SECRET = """
redis.call('SET', ARGV[1] .. 'mock', ARGV[2], 'NX')
return redis.call('GET', ARGV[1] .. 'mock')
"""
