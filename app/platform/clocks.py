"""Change clocks: what is derived in Redis from the database, kept from racing
its writers.

A set derived from the database (a viewer's followees, the photos they liked)
is dropped or patched by its writers after their commit, and rebuilt by a
reader that misses it. A reader that queried the database before a writer's
commit may store the old state after the writer touched Redis, and it would
stay until the TTL. So writers stamp a clock key after their commit, readers
take the time before their query, and `store_set`/`store_string` refuse to
store when the clock is not older. Both sides use the Redis server's TIME:
the one clock they share.
"""
from __future__ import annotations

CLOCK_TTL = 60  # how long a stamp refuses older rebuilds: far longer than any rebuild

# Lua: now() is the Redis server's time in µs, as a string; stamp(key) sets a clock.
NOW_LUA = """
local function now()
  local t = redis.call('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end
"""
STAMP_LUA = NOW_LUA + f"""
local function stamp(key) redis.call('SET', key, now(), 'EX', {CLOCK_TTL}) end
"""

# KEYS: the clock, the key to store. ARGV: since (µs, taken before the query),
# 'string', 'set' or 'hash', the TTL, the value, members or fields and values.
STORE_IF_UNCHANGED = """
local changed = redis.call('GET', KEYS[1])
if changed and tonumber(changed) >= tonumber(ARGV[1]) then return 0 end
if ARGV[2] == 'string' then
  redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[3])
elseif ARGV[2] == 'hash' then
  redis.call('HSET', KEYS[2], unpack(ARGV, 4))
else
  redis.call('SADD', KEYS[2], unpack(ARGV, 4))
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
"""


class Clocks:
    def __init__(self, redis) -> None:
        self.redis = redis
        self._store = redis.register_script(STORE_IF_UNCHANGED)

    def now(self) -> int:
        """The Redis server's time in µs: take it before the query."""
        seconds, micros = self.redis.time()
        return seconds * 1_000_000 + micros

    def store_string(self, clock_key: str, key: str, since: int, value: str, ttl: int) -> bool:
        """SET key, unless `clock_key` was stamped at or after `since`."""
        return bool(self._store(keys=[clock_key, key], args=[since, "string", ttl, value]))

    def store_set(self, clock_key: str, key: str, since: int, members: list[str], ttl: int) -> bool:
        """SADD the members (merging with what writers added meanwhile), unless
        `clock_key` was stamped at or after `since`."""
        return bool(self._store(keys=[clock_key, key], args=[since, "set", ttl, *members]))

    def store_hash(self, clock_key: str, key: str, since: int, fields: dict[str, str], ttl: int) -> bool:
        """HSET the fields, unless `clock_key` was stamped at or after `since`."""
        flat = [part for item in fields.items() for part in item]
        return bool(self._store(keys=[clock_key, key], args=[since, "hash", ttl, *flat]))
