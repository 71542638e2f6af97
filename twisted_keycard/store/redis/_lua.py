"""
The Lua scripts that keep issued keycards, leases, revocations, the
keyring and failed logins in Redis, each run atomically, and the records as
the scripts read and write them.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Sequence
from typing import Any

from twisted_keycard.store._interfaces import IssuedKeycard, Revocation
from twisted_keycard.tokens import Keyring, SigningKey

#: Seconds Redis keeps what ended past its end, since the clocks of the
#: bouncers sharing it differ.
GRACE = 60.0

#: Longest TTL a key gets, in seconds (ten years): a bound for absurd
#: expiries.
MAX_TTL = 10 * 365 * 86400

_OPTIONAL = (
    ("r", "requesterName"),
    ("ad", "address"),
    ("p", "parentId"),
    ("s", "seatPool"),
    ("f", "familyId"),
    ("l", "holderId"),
)


def number(value: float) -> str:
    """
    A float as text that Redis and Python read back exactly.
    """
    return repr(float(value))


def ttl(expires: float, now: float, grace: float) -> int:
    """
    Seconds for Redis to keep what ends at C{expires}, by a clock that
    reads C{now}: until then and C{grace} more, at least a second.
    """
    seconds = expires - now + grace
    if not math.isfinite(seconds):
        return MAX_TTL if seconds > 0 else 1
    return max(1, min(MAX_TTL, math.ceil(seconds)))


def recordFields(record: IssuedKeycard) -> list[str]:
    """
    The field names and values of a keycard's hash, in pairs.
    """
    fields = [
        "id",
        record.keycardId,
        "a",
        record.avatarId,
        "b",
        record.bouncerName,
        "t",
        record.keycardType,
        "i",
        number(record.issued),
        "d",
        number(record.duration),
        "e",
        number(record.expires),
        "h",
        "1" if record.held else "0",
    ]
    for name, attribute in _OPTIONAL:
        value = getattr(record, attribute)
        if value is not None:
            fields += [name, value]
    return fields


def fromFields(values: Sequence[Any] | None) -> IssuedKeycard | None:
    """
    The record a script returned (its fields in L{FIELDS} order), or
    C{None} for none.
    """
    if not values or values[0] is None:
        return None
    (keycardId, a, r, b, t, ad, i, d, e, p, s, h, f, holder) = values
    return IssuedKeycard(
        keycardId=keycardId,
        avatarId=a,
        requesterName=r,
        bouncerName=b,
        keycardType=t,
        address=ad,
        issued=float(i),
        duration=float(d),
        expires=float(e),
        parentId=p,
        seatPool=s,
        held=h == "1",
        familyId=f,
        holderId=holder,
    )


def revocationArgs(revocation: Revocation, now: float, grace: float) -> list[str]:
    return [
        revocation.keycardId,
        number(revocation.expires),
        number(revocation.revokedAt),
        revocation.reason,
        str(ttl(revocation.expires, now, grace)),
    ]


def revocationFrom(fields: dict[str, str]) -> Revocation:
    return Revocation(
        fields["k"], float(fields["e"]), float(fields["at"]), fields.get("why", "")
    )


def keyFields(keyring: Keyring) -> list[str]:
    """
    The keyring's hash: each key id and its key in JSON.
    """
    fields = []
    for key in keyring.keys:
        fields += [
            key.kid,
            json.dumps(
                {
                    "secret": base64.b64encode(key.secret).decode("ascii"),
                    "created": key.created,
                    "notAfter": key.notAfter,
                }
            ),
        ]
    return fields


def keyringFrom(fields: dict[str, str]) -> Keyring | None:
    if not fields:
        return None
    keys = []
    for kid, text in fields.items():
        key = json.loads(text)
        keys.append(
            SigningKey(
                kid, base64.b64decode(key["secret"]), key["created"], key["notAfter"]
            )
        )
    return Keyring.fromKeys(keys)


def pairsToDict(values: Sequence[Any]) -> dict[str, Any]:
    """
    A flat C{[name, value, ...]} reply as a dictionary.
    """
    return dict(zip(values[::2], values[1::2], strict=True))


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
local function seatsOf(r)
  return P .. 'ix:sa:' .. #r.s .. ':' .. r.s .. ':' .. r.a
end
local function indexKeys(r)
  local keys = {P .. 'kc:expiry', P .. 'ix:a:' .. r.a}
  if r.r then table.insert(keys, P .. 'ix:r:' .. r.r) end
  if r.p then table.insert(keys, P .. 'ix:p:' .. r.p) end
  if r.f then table.insert(keys, P .. 'ix:f:' .. r.f) end
  if r.l then table.insert(keys, P .. 'ix:l:' .. r.l) end
  if r.h == '1' then
    table.insert(keys, P .. 'ix:ha:' .. r.a)
    if r.s then
      table.insert(keys, P .. 'ix:s:' .. r.s)
      table.insert(keys, seatsOf(r))
    end
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
-- The channel to tell of a seat freed, once per script (scripts that free
-- seats set it from their arguments).
local CHANNEL, TOLD = nil, false
local function seatFreed()
  if CHANNEL and not TOLD then
    redis.call('PUBLISH', CHANNEL, 'seat')
    TOLD = true
  end
end
local function remove(id)
  local r, values = load(id)
  if not r.id then
    redis.call('ZREM', P .. 'kc:expiry', id)
    return false
  end
  if r.h == '1' and r.s then seatFreed() end
  for _, key in ipairs(indexKeys(r)) do redis.call('ZREM', key, id) end
  redis.call('DEL', P .. 'kc:' .. id)
  return values
end
local function release(id)
  local r = load(id)
  if r.id and r.h == '1' then
    redis.call('ZREM', P .. 'ix:ha:' .. r.a, id)
    if r.s then
      redis.call('ZREM', P .. 'ix:s:' .. r.s, id)
      redis.call('ZREM', seatsOf(r), id)
      seatFreed()
    end
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
local function queueKeys(pool)
  local name = #pool .. ':' .. pool
  return P .. 'sq:o:' .. name, P .. 'sq:l:' .. name, P .. 'sq:w:' .. name
end
local function pruneQueue(pool, when)
  local order, lapse, data = queueKeys(pool)
  for _, ticket in ipairs(redis.call('ZRANGEBYSCORE', lapse, '-inf', when)) do
    redis.call('ZREM', order, ticket)
    redis.call('ZREM', lapse, ticket)
    redis.call('HDEL', data, ticket)
  end
end
local function leaveQueue(pool, ticket)
  local order, lapse, data = queueKeys(pool)
  redis.call('ZREM', lapse, ticket)
  redis.call('HDEL', data, ticket)
  return redis.call('ZREM', order, ticket)
end
local function placeOf(pool, ticket)
  local rank = redis.call('ZRANK', (queueKeys(pool)), ticket)
  if rank then return rank + 1 end
  return false
end
""".replace("FIELD_NAMES", ", ".join(f"'{f}'" for f in FIELDS))

#: ARGV: prefix, TTL, cap per avatar or '', pool size or '', issue time,
#: index cutoff, seats per avatar or '', queue ticket or '', then the
#: record's fields and values.  Returns C{ok}, C{duplicate}, C{avatar},
#: C{queued}, C{pool} or C{seats-per-avatar}.  An avatar's seats of a pool
#: are indexed under C{ix:sa:<length of pool>:<pool>:<avatar>}, so that no
#: pool and avatar names share a key; a pool's queue is kept under
#: C{sq:o:}, C{sq:l:} and C{sq:w:} (order, lapse times and waiters) with
#: the same C{<length of pool>:<pool>}.
ADD = (
    PRELUDE
    + """
local ttl, perAvatar, poolSize, when, cutoff = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local seatsPerAvatar, ticket = ARGV[7], ARGV[8]
local r = {}
for i = 9, #ARGV, 2 do r[ARGV[i]] = ARGV[i + 1] end
local key = P .. 'kc:' .. r.id
if redis.call('EXISTS', key) == 1 then return 'duplicate' end
local queued = false
if perAvatar ~= '' or poolSize ~= '' or seatsPerAvatar ~= '' then
  releaseLapsed(when)
  if perAvatar ~= '' and
     redis.call('ZCOUNT', P .. 'ix:ha:' .. r.a, '(' .. when, '+inf') >= tonumber(perAvatar) then
    return 'avatar'
  end
  if poolSize ~= '' and r.s then
    pruneQueue(r.s, when)
    local head = redis.call('ZRANGE', (queueKeys(r.s)), 0, 0)[1]
    if head and ticket ~= '' then
      queued = placeOf(r.s, ticket) ~= false
      if queued and head ~= ticket then return 'queued' end
    end
    if head and not queued then return 'pool' end
  end
  if poolSize ~= '' and r.s and
     redis.call('ZCOUNT', P .. 'ix:s:' .. r.s, '(' .. when, '+inf') >= tonumber(poolSize) then
    return 'pool'
  end
  if seatsPerAvatar ~= '' and r.s and
     redis.call('ZCOUNT', seatsOf(r), '(' .. when, '+inf') >= tonumber(seatsPerAvatar) then
    return 'seats-per-avatar'
  end
end
local fields = {}
for i = 9, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', key, unpack(fields))
redis.call('EXPIRE', key, ttl)
index(r, ttl, cutoff)
if queued then leaveQueue(r.s, ticket) end
return 'ok'
"""
)

#: ARGV: prefix, pool, ticket, avatar, address or '', lapse time, time,
#: TTL, queue size, share per avatar or '', share per address or ''.
#: Returns the waiter's place and the number waiting, or C{queue},
#: C{queue-per-avatar} or C{queue-per-address}.
JOIN_QUEUE = (
    PRELUDE
    + """
local pool, ticket, avatar, address = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local lapses, when, ttl = ARGV[6], ARGV[7], ARGV[8]
local size, perAvatar, perAddress = ARGV[9], ARGV[10], ARGV[11]
pruneQueue(pool, when)
local order, lapse, data = queueKeys(pool)
if not redis.call('ZSCORE', order, ticket) then
  if redis.call('ZCARD', order) >= tonumber(size) then return 'queue' end
  local sameAvatar, sameAddress = 0, 0
  for _, text in ipairs(redis.call('HVALS', data)) do
    local w = cjson.decode(text)
    if w.a == avatar then sameAvatar = sameAvatar + 1 end
    if address ~= '' and w.ad == address then sameAddress = sameAddress + 1 end
  end
  if perAvatar ~= '' and sameAvatar >= tonumber(perAvatar) then
    return 'queue-per-avatar'
  end
  if perAddress ~= '' and address ~= '' and sameAddress >= tonumber(perAddress) then
    return 'queue-per-address'
  end
  redis.call('ZADD', order, redis.call('INCR', P .. 'sq:seq'), ticket)
  local w = {a = avatar}
  if address ~= '' then w.ad = address end
  redis.call('HSET', data, ticket, cjson.encode(w))
end
redis.call('ZADD', lapse, lapses, ticket)
extend(order, ttl)
extend(lapse, ttl)
extend(data, ttl)
return {placeOf(pool, ticket), redis.call('ZCARD', order)}
"""
)

#: ARGV: prefix, pool, ticket, lapse time, time, TTL.  Returns the place and
#: the number waiting, or nil when the ticket is not queued.
RENEW_PLACE = (
    PRELUDE
    + """
local pool, ticket, lapses, when, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
pruneQueue(pool, when)
local order, lapse, data = queueKeys(pool)
if not redis.call('ZSCORE', order, ticket) then return false end
redis.call('ZADD', lapse, lapses, ticket)
extend(order, ttl)
extend(lapse, ttl)
extend(data, ttl)
return {placeOf(pool, ticket), redis.call('ZCARD', order)}
"""
)

#: ARGV: prefix, pool, ticket, time.  Returns the place, or nil.
QUEUE_PLACE = PRELUDE + "pruneQueue(ARGV[2], ARGV[4]) return placeOf(ARGV[2], ARGV[3])"

#: ARGV: prefix, pool, ticket.  Returns 1 if it was queued, else 0.
LEAVE_QUEUE = PRELUDE + "return leaveQueue(ARGV[2], ARGV[3])"

#: ARGV: prefix, pool, time.  Returns the seats of the pool held then.
SEATS_TAKEN = (
    PRELUDE
    + """
releaseLapsed(ARGV[3])
local name = ARGV[2]
return redis.call('ZCOUNT', P .. 'ix:s:' .. name, '(' .. ARGV[3], '+inf')
"""
)

#: ARGV: prefix, pool, time.  Returns {ticket, waiter JSON, lapse time} of
#: each live waiter, the head first.
WAITERS = (
    PRELUDE
    + """
local pool = ARGV[2]
pruneQueue(pool, ARGV[3])
local order, lapse, data = queueKeys(pool)
local found = {}
for _, ticket in ipairs(redis.call('ZRANGE', order, 0, -1)) do
  local lapses = redis.call('ZSCORE', lapse, ticket)
  table.insert(found, {ticket, redis.call('HGET', data, ticket), lapses})
end
return found
"""
)

#: ARGV: prefix, id, channel.  Returns the removed record's fields, or
#: nil; publishes C{seat} on the channel if it held a seat.
REMOVE = PRELUDE + "CHANNEL = ARGV[3] return remove(ARGV[2])"

#: ARGV: prefix, id, channel.  Returns the record's fields after, or nil;
#: publishes C{seat} on the channel if it held a seat.
RELEASE = (
    PRELUDE
    + """
CHANNEL = ARGV[3]
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

#: ARGV: prefix, time, channel.  Returns how many keycards were released;
#: publishes C{seat} on the channel if any held a seat.
RELEASE_LAPSED = PRELUDE + "CHANNEL = ARGV[3] return releaseLapsed(ARGV[2])"

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


_REVOCATION_PRELUDE = """
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
    _REVOCATION_PRELUDE
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
    _REVOCATION_PRELUDE
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

#: ARGV: prefix, channel, the keyring's version and the store's key check
#: as read before (see C{_wrap}), then each key's id and wrapped JSON.
#: Writes only if the version and check are still those: returns 1 if
#: written, else 0.
SAVE_KEYRING = """
local P = ARGV[1]
if (redis.call('GET', P .. 'keyring:version') or '0') ~= ARGV[3]
   or (redis.call('GET', P .. 'kek') or '') ~= ARGV[4] then
  return 0
end
redis.call('DEL', P .. 'keyring')
local fields = {}
for i = 5, #ARGV do table.insert(fields, ARGV[i]) end
redis.call('HSET', P .. 'keyring', unpack(fields))
redis.call('INCR', P .. 'keyring:version')
redis.call('PUBLISH', ARGV[2], 'keyring')
return 1
"""

#: ARGV: prefix, a fresh secret (wrapped).  Returns the stored secret: the
#: first one written by any process.
MOCK_SECRET = """
redis.call('SET', ARGV[1] .. 'mock', ARGV[2], 'NX')
return redis.call('GET', ARGV[1] .. 'mock')
"""


#: ARGV: prefix, source, where to read from ('-' or '(ID'), entries to read
#: at most, TTL, entries kept at most, then, if there are events, the
#: latest time among them and their JSON.  The events of one call are one
#: entry of the stream C{throttle:log}.  Returns the id of the last entry
#: read (or ''), the number of entries read, then the JSON of the entries
#: other sources wrote.
SHARE_THROTTLE = """
local P, source, limit = ARGV[1], ARGV[2], tonumber(ARGV[4])
local log = P .. 'throttle:log'
if ARGV[7] then
  redis.call('XADD', log, 'MAXLEN', '~', ARGV[6], '*', 's', source, 'm', ARGV[7], 'e', ARGV[8])
  if redis.call('TTL', log) < tonumber(ARGV[5]) then redis.call('EXPIRE', log, ARGV[5]) end
end
if limit <= 0 then return {'', 0} end
local entries = redis.call('XRANGE', log, ARGV[3], '+', 'COUNT', limit)
local result = {'', #entries}
if #entries > 0 then result[1] = entries[#entries][1] end
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if fields[2] ~= source then table.insert(result, fields[6]) end
end
return result
"""

#: ARGV: prefix, time, most entries to look at.  Forgets the entries at the
#: head of the log whose events are all dated at or before the time.
#: Returns {events forgotten, entries forgotten}.
FLUSH_THROTTLE = """
local log = ARGV[1] .. 'throttle:log'
local dead, forgotten = {}, 0
local entries = redis.call('XRANGE', log, '-', '+', 'COUNT', ARGV[3])
for _, entry in ipairs(entries) do
  local fields = entry[2]
  if tonumber(fields[4]) > tonumber(ARGV[2]) then break end
  table.insert(dead, entry[1])
  forgotten = forgotten + #cjson.decode(fields[6])
end
if #dead > 0 then redis.call('XDEL', log, unpack(dead)) end
return {forgotten, #dead}
"""
