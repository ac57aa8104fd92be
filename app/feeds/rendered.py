r"""The warm home feed in one Redis round trip: media objects pre-rendered,
and a script that looks up the token, pages the feed, checks who may see
what and names the rendered media to show, all inside Redis.

Why. Assembling a page the long way (FeedManager.page, then app.media.reader) takes
five round trips (token, followed celebrities, the feed range, the followee
check, the cache) and builds twenty media objects in Python. Here the route
sends one EVALSHA, and fills a few placeholders in the rendered JSON it names.
FeedManager (feeds.py) and app.media.reader stay the source of truth, and the path
for whatever is cold.

What Redis holds for it, beside FeedManager's sets and the token cache:

  mi:{photo}   a ready photo's index entry: its owner's id, \x04, the hash of
               its rendered media object, \x04, the ids of the users the
               object shows (comma-separated). "-": the photo no longer exists.
               Ids are 19 digits and hashes 20: the script reads the fields
               by position (a pattern match cost it a fifth of its time), and
               an id of another width is not indexed (its page is assembled).
  ui:{user}    the hash of the user's rendered summary.
  rb:{hash}    a rendered fragment, by the hash of its text: a media object's
               JSON with placeholders \x02ref\x03 where it depends on someone
               (a user id for that user's summary, "L" for the viewer's
               user_has_liked), or a user summary's JSON.
  liked:{user} the ids of the photos the user liked, with the sentinel "0"
               once built from the database; like/unlike keep it exact.

(The previous format kept the JSON itself in mf:{photo} and us:{user}: new
names, so that entries in the old format are never read, and expire.)

Why the fragments are apart from the index: strings that pass through a Lua
script are copied in and out of Lua at ~2 µs per KB (measured: MGET of twenty
1 KB values costs ~50 µs inside a script, 7 µs as a command), which made the
fragments most of what a read cost Redis. So the script handles only the
small index entries and returns hashes (one string, a field per line); each
worker keeps the fragments it has seen or rendered (LOCAL_FRAGMENTS of them,
already cut at their placeholders), and fetches the others with a plain MGET,
a second round trip only for fragments new to that process. A fragment is
named by its content, so what a worker holds is never stale: a change renders
a new fragment under a new hash.

Relative storage URLs (the local media folder) are rendered with \x01 where
the request's base URL goes. JSON text never holds a raw control character
(a caption's are escaped), so none of these markers can be forged.

Misses. If anything the page needs is not in Redis (token not cached, a set
not built, a photo or user not rendered, a fragment expired or evicted), the
read answers "miss" and the route assembles the page the long way, then
`warm`s what it used. Ids are compared as strings: every member and cursor
is 19 digits (see feeds.py).

Freshness. The writers of what these keys hold call `forget_*` after their
commit, which leaves a tombstone "~<Redis time>". A missed read returns the
Redis time at which it missed, before it reads the database; `warm` fills a
key only where it is empty or holds a tombstone older than that: a reader
that loaded the state from before a commit cannot store it back, and the
first read that started after the commit renders it again (a photo liked
every second is still served rendered). Fragments need no such rule: named
by their content, an old one is never named by an entry stored after the
change. Times are the Redis server's own clock (TIME), the one clock both
sides share.

The script reads keys it was not passed: fine on a Redis server, not on a
Redis Cluster.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Callable
from string import Template

import orjson
from prometheus_client import Counter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.feeds.manager import BUILT, SLACK, FeedManager, FeedPage
from app.media.reader import MediaReader, UserSummary
from app.platform import keys
from app.platform.clocks import NOW_LUA, STAMP_LUA
from app.platform.keys import (
    following_key,
    fragment_key,
    liked_clock_key,
    liked_key,
    photo_list_keys,
    rendered_media_key,
    rendered_user_key,
)
from models import Like

log = logging.getLogger(__name__)

FEED_READS = Counter("shutter_feed_reads_total", "Home feed reads, by how they were answered", ["path"])
WARM_READS = Counter("shutter_warm_reads_total", "Reads other than the feed that try the warm path "
                     "(app.reads), by read and how they were answered", ["read", "path"])
FRAGMENTS = Counter("shutter_feed_fragments_total", "Rendered fragments used by warm feed reads, by where "
                    "they came from: the worker's own memory or Redis", ["source"])
_FRAGMENTS_LOCAL, _FRAGMENTS_FETCHED = FRAGMENTS.labels("local"), FRAGMENTS.labels("redis")

HELD_TTL = 60  # how long a tombstone lasts: far longer than any reader's miss-then-fill
GONE = "-"  # the photo no longer exists (its feed entries go soon)
MEDIA_TTL = 600  # the forget_* calls keep entries fresh; the TTL only ages out cold ones
GONE_TTL = 300
USER_TTL = 3600
LIKED_TTL = 3600
LOCAL_FRAGMENTS = 20_000  # per worker: ~1.5 KB each, ~30 MB at most
# Control characters never appear raw in JSON text: safe as markers.
BASE = "\x01"  # where the request's base URL goes
REF_START, REF_END = "\x02", "\x03"  # around a placeholder's name
FIELD_END = "\x04"  # after each of an index entry's first two fields
ID_WIDTH = 19  # digits in every id since 2014 (feeds.py); the script reads index entries by position

# Placeholders while rendering, unique to this process: no caption can hold one.
_REF = uuid.uuid4().hex
_REF_BASE = f"{_REF}:base"
_REF_PATTERN = re.compile(rf'"{_REF}:([^"]*)"')
LIKED_REF = "L"
READ_CONNECTION_NAME = "shutter:feed-read"


def fragment_hash(text: str) -> str:
    """20 hex digits, as the script reads them from an index entry."""
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def _cursor(value: int | None) -> str:
    """A cursor as the script compares it: 19 digits (ids are), '' for none."""
    return "" if value is None else str(value).zfill(ID_WIDTH)


# The key prefixes are app.platform.keys' (${NAME}): one definition for both languages.
# What every warm read's script shares (the feed's here, the others' in app.reads):
# the miss reply, the token, index entries read by position, and the reply of
# rendered media (`media_reply`), which the Python side reads with `RenderedFeed.answer`.
WARM_LUA = NOW_LUA + Template("""
local BUILT, GONE = '0', '-'
local function miss(why) return 'miss\\n' .. why .. '\\n' .. now() end
local function held(value) return string.byte(value) == 126 end  -- '~'

-- The cached token lookup under KEYS[1] and its user id (nil, nil when not cached).
local function viewer()
  local token = redis.call('GET', KEYS[1])
  return token, token and string.match(token, '"u":%s*(%d+)')
end

-- A mi: entry's owner and fragment hash; nil when it is not this version's
-- format. Fixed widths, read by position: a pattern match cost a fifth of the feed's script.
local function entry_fields(value)
  if string.byte(value, 20) ~= 4 or string.byte(value, 41) ~= 4 or (#value - 40) % 20 ~= 0 then return nil end
  return string.sub(value, 1, 19), string.sub(value, 21, 40)
end

-- The ids of the users an entry's object shows, added once each to `users`.
local function add_users(value, users, wanted)
  for at = 42, #value, 20 do
    local ref = string.sub(value, at, at + 18)
    if not wanted[ref] then wanted[ref] = true; users[#users + 1] = ref end
  end
end

-- The users' ids, then the hashes of their rendered summaries, appended to
-- `reply`; false when one of them is not rendered (a miss).
local function add_user_hashes(reply, users)
  if #users == 0 then return true end
  local ukeys = {}
  for i, id in ipairs(users) do ukeys[i] = '${RENDERED_USER}' .. id; reply[#reply + 1] = id end
  local values = redis.call('MGET', unpack(ukeys))
  for i = 1, #users do
    if not values[i] or held(values[i]) then return false end
    reply[#reply + 1] = values[i]
  end
  return true
end

-- The reply, one string of lines (no line of it can hold a newline: JSON
-- text, ids, hashes): `next`, the hashes of the media shown and of the
-- summaries of the users they show (the app has or fetches the fragments, and
-- fills them in), and the viewer's likes among them. `liked`: the viewer's
-- liked:{user} key, built.
local function media_reply(token, next, liked, shown, hashes, users)
  local likes = ''
  if #shown > 0 then likes = table.concat(redis.call('SMISMEMBER', liked, unpack(shown))) end
  local reply = {'ok', token, next, likes, #users}
  if not add_user_hashes(reply, users) then return miss('users') end
  for _, hash in ipairs(hashes) do reply[#reply + 1] = hash end
  return table.concat(reply, '\\n')
end
""").substitute(vars(keys))

READ_PAGE = WARM_LUA + Template("""
local count, want = tonumber(ARGV[1]), tonumber(ARGV[2])
local max_id, min_id = ARGV[3], ARGV[4]

local token, uid = viewer()
if not uid then return miss('token') end
local celebrities = redis.call('GET', '${CELEBRITIES}' .. uid)
if not celebrities then return miss('celebrities') end
local following, liked = '${FOLLOWING}' .. uid, '${LIKED}' .. uid
if redis.call('SISMEMBER', following, BUILT) == 0 then return miss('following') end
if redis.call('SISMEMBER', liked, BUILT) == 0 then return miss('liked') end

-- The candidates: the newest `want` of the feed and of each followed
-- celebrity's posts, merged (FeedManager._range and .page, in Redis).
local keys = {'${FEED}' .. uid}
for id in string.gmatch(celebrities, '%d+') do keys[#keys + 1] = '${POSTS}' .. id end
local high = max_id ~= '' and max_id or '+inf'
local low = min_id ~= '' and min_id or '(0'
local candidates, more = {}, false
for _, key in ipairs(keys) do
  if not redis.call('ZSCORE', key, BUILT) then return miss('unbuilt') end
  local ids
  if max_id == '' and min_id == '' then  -- the first page, by rank: one more tells if more follow
    ids = redis.call('ZREVRANGE', key, 0, want)
    if ids[#ids] == BUILT then ids[#ids] = nil end
    if #ids > want then more = true; ids[#ids] = nil end
  else
    local fetch, raw, full = want + 4
    repeat  -- score bounds are fuzzy: drop the ties beyond the cursors, fetch more if they ate the page
      raw, ids = redis.call('ZREVRANGEBYSCORE', key, high, low, 'LIMIT', 0, fetch), {}
      for _, m in ipairs(raw) do
        if m ~= BUILT and (max_id == '' or m < max_id) and (min_id == '' or m > min_id) then ids[#ids + 1] = m end
      end
      full = #raw == fetch
      fetch = fetch * 4
    until not (full and #ids < want)
    if full or #ids > want then more = true end
    for i = #ids, want + 1, -1 do ids[i] = nil end
  end
  -- Both lists are newest first: merge them in one pass, without duplicates.
  local merged, a, b = {}, 1, 1
  while candidates[a] or ids[b] do
    local x, y = candidates[a], ids[b]
    if y == nil or (x ~= nil and x > y) then merged[#merged + 1] = x; a = a + 1
    elseif x == nil or y > x then merged[#merged + 1] = y; b = b + 1
    else merged[#merged + 1] = x; a = a + 1; b = b + 1 end
  end
  candidates = merged
end
if #candidates > want then more = true end
local n = math.min(#candidates, want)

-- The first `count` the viewer may see (their own and their followees'
-- photos), their fragments' hashes, and who else they show.
local shown, hashes, looked, users, wanted = {}, {}, 0, {}, {}
while #shown < count and looked < n do
  local batch, mkeys = {}, {}
  for i = looked + 1, math.min(n, looked + count - #shown) do
    batch[#batch + 1] = candidates[i]; mkeys[#mkeys + 1] = '${RENDERED_MEDIA}' .. candidates[i]
  end
  looked = looked + #batch
  local values, found, owners, entries, digests = redis.call('MGET', unpack(mkeys)), {}, {}, {}, {}
  for i = 1, #batch do
    local value = values[i]
    if not value or held(value) then return miss('media') end
    if value ~= GONE then
      local owner, digest = entry_fields(value)
      if not owner then return miss('media') end  -- not this version's format: assemble
      found[#found + 1] = i; owners[#owners + 1] = owner; entries[#entries + 1] = value; digests[#digests + 1] = digest
    end
  end
  if #owners > 0 then
    local followed = redis.call('SMISMEMBER', following, unpack(owners))
    for j, i in ipairs(found) do
      if owners[j] == uid or followed[j] == 1 then
        shown[#shown + 1] = batch[i]; hashes[#hashes + 1] = digests[j]
        add_users(entries[j], users, wanted)
      end
    end
  end
end
local next_max_id = ''
if n > 0 and (more or looked < n) then next_max_id = candidates[looked] end
return media_reply(token, next_max_id, liked, shown, hashes, users)
""").substitute(vars(keys))

# KEYS: where to store; ARGV: since (µs), then a value and a TTL per key.
FILL = """
local since = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  if not current or (string.sub(current, 1, 1) == '~' and tonumber(string.sub(current, 2)) < since) then
    redis.call('SET', key, ARGV[2 * i], 'EX', ARGV[2 * i + 1])
  end
end
"""

HOLD = NOW_LUA + """
local tombstone = '~' .. now()
for _, key in ipairs(KEYS) do redis.call('SET', key, tombstone, 'EX', ARGV[1]) end
"""

# A committed like (ARGV[1] = '1') or unlike of photo ARGV[2]: the set follows
# it, and its clock is stamped (app/platform/clocks.py). KEYS: liked:{u}, its clock.
LIKED_CHANGED = STAMP_LUA + """
if ARGV[1] == '1' then redis.call('SADD', KEYS[1], ARGV[2]) else redis.call('SREM', KEYS[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
stamp(KEYS[2])
"""


@dataclass(frozen=True)
class Miss:
    why: str
    since: int  # the Redis time (µs) of the miss: what `warm` may store must be read after it


@dataclass(frozen=True)
class Rendered:
    token: str  # the cached token lookup the read was made with (auth.TokenService.from_cached)
    data: str  # the media objects, comma-separated
    next: str  # the script's cursor field ('' for none)


@dataclass(frozen=True)
class RenderedPage:
    token: str  # the cached token lookup the page was read with (auth.TokenService.from_cached)
    data: str  # the media objects, comma-separated
    next_max_id: int | None


# A fragment cut at its placeholders for one base URL: literal text at even
# indexes, placeholder names (a user id or LIKED_REF) at odd ones.
_PLACEHOLDER = re.compile(f"{REF_START}([^{REF_END}]*){REF_END}")


def _cut(text: str, base: str) -> list[str]:
    return _PLACEHOLDER.split(text.replace(BASE, base))


_LIKED_JSON = {"1": "true", "0": "false"}  # the script's flags as user_has_liked


def _fill_in(media: list[list[str]], likes: str, users: dict[str, str]) -> str:
    """The page's media objects, comma-separated, their placeholders filled in."""
    objects = []
    for parts, like in zip(media, likes):
        out = [parts[0]]
        for i in range(1, len(parts), 2):
            ref = parts[i]
            out.append(_LIKED_JSON[like] if ref == LIKED_REF else users[ref])
            out.append(parts[i + 1])
        objects.append("".join(out))
    return ",".join(objects)


def _reads(read: str, path: str):
    """The counter of how `read` was answered: the feed's own, or WARM_READS."""
    return FEED_READS.labels(path) if read == "feed" else WARM_READS.labels(read, path)


def _miss(fields: list[str], read: str) -> Miss | None:
    """The Miss a script's reply lines say, counted; None for an answer."""
    if fields[0] == "ok":
        return None
    _, why, since = fields
    _reads(read, f"miss:{why}").inc()
    return Miss(why, int(since))


def render_media(media_reader: MediaReader, entry: dict) -> tuple[str, list[str]]:
    """A ready photo's media_entries() entry as a fragment, and the ids of the
    users it shows (its placeholders), in order."""
    refs = {entry["user_id"], *entry["liker_ids"], *(c["user_id"] for c in entry["comments"])}
    media = media_reader.media_object(entry, {i: f"{_REF}:{i}" for i in refs},
                                      user_has_liked=f"{_REF}:{LIKED_REF}", base=_REF_BASE)
    text = orjson.dumps(media).decode().replace(_REF_BASE, BASE)
    shown = list(dict.fromkeys(ref for ref in _REF_PATTERN.findall(text) if ref != LIKED_REF))
    return _REF_PATTERN.sub(lambda m: f"{REF_START}{m[1]}{REF_END}", text), shown


def render_user(media_reader: MediaReader, summary: UserSummary) -> str:
    """A user summary as a fragment."""
    return orjson.dumps(media_reader.serializer.user_summary(summary, _REF_BASE)).decode().replace(_REF_BASE, BASE)


def placeholder(name: str) -> str:
    """What stands for placeholder `name` (a user id, LIKED_REF…) in an object given to render_json."""
    return f"{_REF}:{name}"


def render_json(build: Callable[[str], object]) -> str:
    """`build(base)`'s JSON as a fragment (other reads' objects): its relative storage
    URLs under BASE, its placeholder() strings as placeholders."""
    text = orjson.dumps(build(_REF_BASE)).decode().replace(_REF_BASE, BASE)
    return _REF_PATTERN.sub(lambda m: f"{REF_START}{m[1]}{REF_END}", text)


class RenderedFeed:
    def __init__(self, redis, feeds: FeedManager) -> None:
        # Every cache backend is shared and invalidated by writers (app/platform/cache.py),
        # so what is rendered from it lives its own TTLs.
        self.redis = redis
        self.feeds = feeds
        self.media_ttl = MEDIA_TTL
        self.user_ttl = USER_TTL
        self._read_page = redis.register_script(READ_PAGE)
        self._fill = redis.register_script(FILL)
        self._hold_script = redis.register_script(HOLD)
        self._liked_changed = redis.register_script(LIKED_CHANGED)
        # (base URL, hash) -> the fragment cut for that base; oldest out first.
        self._fragments: dict[tuple[str, str], list[str]] = {}
        self._fragments_lock = threading.Lock()
        self._own = threading.local()  # this thread's connection for the warm reads (run)

    def read(self, token_key: str, count: int, max_id: int | None, min_id: int | None,
             base: str) -> RenderedPage | Miss:
        """The page, its URLs under `base`, in one round trip (two if this
        process lacks some of its fragments), or a Miss when something is cold."""
        reply = self.run(self._read_page, [token_key], [count, count + SLACK, _cursor(max_id), _cursor(min_id)])
        answer = self.answer(reply.split("\n"), base)
        if isinstance(answer, Miss):
            return answer
        return RenderedPage(answer.token, answer.data, int(answer.next) if answer.next else None)

    def warm_read(self, read: str, script, token_key: str, args: list, base: str) -> Rendered | Miss:
        """One of app.reads' scripts that answer media_reply, filled in."""
        fields = self.script_fields(read, script, token_key, args)
        return fields if isinstance(fields, Miss) else self.answer(fields, base, read)

    def script_fields(self, read: str, script, token_key: str, args: list) -> list[str] | Miss:
        """One of app.reads' scripts, run: its reply's lines, or the Miss it answered
        (counted in WARM_READS under `read`). A Redis failure is a miss too, since
        the long way still answers."""
        try:
            reply = self.run(script, [token_key], args)
        except RedisError:
            log.warning("warm read %s: Redis failed", read, exc_info=True)
            return Miss("redis", 0)
        fields = reply.split("\n")
        return _miss(fields, read) or fields

    def answer(self, fields: list[str], base: str, read: str = "feed") -> Rendered | Miss:
        """A warm read script's reply lines (WARM_LUA's media_reply, or a miss) as the
        media objects it names, filled in; counted by how `read` was answered."""
        miss = _miss(fields, read)
        if miss is not None:
            return miss
        _, token, next_cursor, likes, user_count, *rest = fields
        user_count = int(user_count)
        user_ids, hashes = rest[:user_count], rest[user_count:]
        fragments = self._fragments_for(hashes, base)
        if fragments is None:
            _reads(read, "miss:fragments").inc()
            return Miss("fragments", self.feeds.clocks.now())
        _reads(read, "rendered").inc()
        users = {user_id: fragments[i][0] for i, user_id in enumerate(user_ids)}
        return Rendered(token, _fill_in(fragments[user_count:], likes, users), next_cursor)

    def run(self, script, keys: list[str], args: list) -> str:
        """A registered read script, on a connection this thread keeps to itself. Checking one
        out of redis-py's pool (a poll() that the socket holds no stale reply,
        then bookkeeping) costs about as much CPU as the rest of the call;
        a connection only this thread uses cannot hold a stale reply (redis-py
        drops it on any error mid-reply). The unusual cases (the script not
        loaded, the connection lost) go the ordinary way: through the pool,
        which loads the script and retries."""
        local = self._own
        if getattr(local, "pid", None) != os.getpid():  # a new thread, or a forked worker
            pool = self.redis.connection_pool
            kwargs = {**pool.connection_kwargs, "client_name": READ_CONNECTION_NAME}  # as CLIENT LIST shows it
            local.connection, local.pid = pool.connection_class(**kwargs), os.getpid()
        try:
            local.connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
            return local.connection.read_response()
        except (NoScriptError, RedisConnectionError, RedisTimeoutError):
            return script(keys=keys, args=args)

    def _fragments_for(self, hashes: list[str], base: str) -> list[list[str]] | None:
        """The fragments, cut for `base`: from this process, else from Redis.
        None if Redis no longer has one (expired or evicted)."""
        known = self._fragments
        found = [known.get((base, h)) for h in hashes]
        missing = [h for h, parts in zip(hashes, found) if parts is None]
        _FRAGMENTS_LOCAL.inc(len(hashes) - len(missing))
        if missing:
            missing = list(dict.fromkeys(missing))
            texts = self.redis.mget([fragment_key(h) for h in missing])
            _FRAGMENTS_FETCHED.inc(len(missing))
            if None in texts:
                return None
            cut = {(base, h): _cut(text, base) for h, text in zip(missing, texts)}
            self._remember(cut)
            found = [parts if parts is not None else cut[(base, h)] for h, parts in zip(hashes, found)]
        return found

    def fragments(self, hashes: list[str], base: str) -> list[list[str]] | None:
        """The fragments named, cut for `base` (literal text at even indexes, placeholder
        names at odd ones); None if Redis no longer has one. For other reads' replies."""
        return self._fragments_for(hashes, base)

    def keep(self, fragments: dict[str, str], base: str) -> None:
        """Keep fragments another read rendered (hash: text) in this process, cut for `base`."""
        self._remember({(base, digest): _cut(text, base) for digest, text in fragments.items()})

    def _remember(self, cut: dict[tuple[str, str], list[str]]) -> None:
        """Keep fragments in this process, the oldest out first past LOCAL_FRAGMENTS."""
        known = self._fragments
        with self._fragments_lock:  # for threaded workers: eviction iterates
            for key, parts in cut.items():
                if len(known) >= LOCAL_FRAGMENTS:
                    del known[next(iter(known))]  # named by content, they never go stale: only old
                known[key] = parts

    def warm(self, session: Session, viewer_id: int, miss: Miss, page: FeedPage,
             users: dict[int, UserSummary], base: str, more: dict[str, tuple[str, int]] | None = None) -> None:
        """Store what a page assembled after `miss` used, so that the next read of
        it is one round trip; this process keeps the fragments, cut for `base`.
        `more`: other reads' entries (key: (value, TTL)), stored by the same rule.
        A Redis failure is logged, not raised: the page stands, and the next
        read assembles it again."""
        try:
            self._warm(session, viewer_id, miss, page, users, base, more or {})
        except RedisError:
            log.warning("feed of user %s: rendered media not stored", viewer_id, exc_info=True)

    def _warm(self, session: Session, viewer_id: int, miss: Miss, page: FeedPage,
              users: dict[int, UserSummary], base: str, more: dict[str, tuple[str, int]]) -> None:
        index: dict[str, tuple[str, int]] = dict(more)
        fragments: dict[str, tuple[str, int]] = {}
        for photo_id in page.photo_ids:
            text, shown = render_media(self.feeds.media, page.entries[photo_id])
            digest = fragment_hash(text)
            fragments[digest] = (text, self.media_ttl + HELD_TTL)
            owner = str(page.entries[photo_id]["user_id"])
            if all(len(user_id) == ID_WIDTH for user_id in (owner, *shown)):  # as the script reads them
                index[rendered_media_key(photo_id)] = (f"{owner}{FIELD_END}{digest}{FIELD_END}{','.join(shown)}",
                                              self.media_ttl)
        for photo_id in page.gone:
            index[rendered_media_key(photo_id)] = (GONE, GONE_TTL)
        for user_id, summary in users.items():
            text = render_user(self.feeds.media, summary)
            digest = fragment_hash(text)
            fragments[digest] = (text, self.user_ttl + HELD_TTL)
            index[rendered_user_key(user_id)] = (digest, self.user_ttl)
        pipe = self.redis.pipeline(transaction=False)
        # Fragments first and unconditionally (a fragment is its own name: an
        # old one is harmless, as no index entry stored after a change points
        # to it); then the index entries, only where no change came since.
        for digest, (text, ttl) in fragments.items():
            pipe.set(fragment_key(digest), text, ex=ttl)
        if index:
            args = [miss.since]
            for value, ttl in index.values():
                args += [value, ttl]
            self._fill(keys=list(index), args=args, client=pipe)
        pipe.sismember(liked_key(viewer_id), BUILT)
        pipe.sismember(following_key(viewer_id), BUILT)
        *_, liked_built, following_built = pipe.execute()
        self._remember({(base, digest): _cut(text, base) for digest, (text, _) in fragments.items()})
        if not liked_built:
            self.build_liked(session, viewer_id, miss.since)
        if not following_built:  # a page of the viewer's own photos never needed it
            self.feeds.build_following(session, viewer_id, miss.since)

    def build_liked(self, session: Session, user_id: int, since: int) -> None:
        """liked:{user} from the database, read after `since` (Redis µs). A SADD:
        it merges with what a like wrote meanwhile; skipped if a like or unlike
        was committed after `since`, as the query may not have seen it."""
        photo_ids = session.scalars(select(Like.photo_id).where(Like.user_id == user_id)).all()
        self.feeds.clocks.store_set(liked_clock_key(user_id), liked_key(user_id), since,
                                    [BUILT, *map(str, photo_ids)], LIKED_TTL)

    # -- after a commit: keep what is rendered true ----------------------------
    def forget_photos(self, photo_ids) -> None:
        """Their likes, comments or existence changed: their entries and their
        lists of comments and likes (app.reads.social) go, in one call."""
        self._hold([key for i in photo_ids for key in (rendered_media_key(i), *photo_list_keys(i))])

    def forget_users(self, user_ids) -> None:
        """Their name or picture changed."""
        self._hold([rendered_user_key(i) for i in user_ids])

    def _hold(self, keys: list[str]) -> None:
        if keys:
            self._hold_script(keys=keys, args=[HELD_TTL])

    def liked(self, user_id: int, photo_id: int, liked: bool) -> None:
        """A like or unlike was committed. Written whether or not the set is built:
        an unbuilt set lacks the sentinel, so it is still rebuilt."""
        self._liked_changed(keys=[liked_key(user_id), liked_clock_key(user_id)],
                            args=["1" if liked else "0", photo_id, LIKED_TTL])
