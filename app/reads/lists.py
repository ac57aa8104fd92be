r"""The warm media lists: a user's recent media, a tag's, a location's, the
viewer's likes and the popular ones, each in one Redis round trip with no SQL,
from the feed's rendered fragments (mi:, ui:, rb:, liked:: app/feeds/rendered.py),
so a media object is rendered once for every list that shows it.

What Redis holds for them (app.platform.keys):

  um:{user}, tm:{tag name}, lm:{location}  the ready photos of a user, a tag, a location
  lkm:{user}   "<like id>:<photo id>" for each photo the user liked

Each is a sorted set whose scores are all 0, so that ZREVRANGEBYLEX pages it
by its members: ids are 19 digits (app.feeds.manager), so their text order is
their numeric order, and the cursors (max_id, min_id, max_tag_id, max_like_id)
are exact bounds, without the score ties of the feed's sets. The member "0"
marks a set built from the database; "1" one that holds only its newest
LIST_SIZE members (both sort below every id): a page that reaches "1" misses.

Who keeps them exact. Writers patch a set after their commit and stamp its
clock (app/platform/clocks.py): publishing a photo (ready) and deleting a
published one patch its owner's, its tags' and its location's lists (tags and
location are set at upload and never change); liking and unliking patch the
liker's. A writer patches only a set that exists, so a set is built or
absent; an absent one is built by the next read that misses it, from a query
made after the miss (`since`), and not stored if a writer stamped its clock
since. A patch that fails is redone by a task that reads the truth again.
A liked photo's deletion does not patch its likers' lists: the script skips
it (mi: says it is gone, as the long way's join does) and a long way that
finds it gone takes it out.

The lists hold every ready photo, not only what the viewer may see: the
script applies may_see (app.social.graph) per owner, as the long way's query
applies visibility.visible_to, and reads on to count + 1 visible ones, to know
whether a next page exists exactly as split_page does. It looks at LOOK_FACTOR
* (count + 1) members at most; past that (many hidden photos) it misses.

A miss answers the long way, unchanged, then `warm_*` stores what the script
will look at: the set, the media objects of the members it will look at (mi:
entries hold no viewer's view), the viewer's liked: and following:, the
viewer's relations and the owners' privacy.
"""
from __future__ import annotations

import logging
from string import Template

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.feeds.manager import FeedManager, FeedPage
from app.feeds.rendered import ID_WIDTH, WARM_LUA, Miss, Rendered, RenderedFeed
from app.platform import keys
from app.platform.clocks import STAMP_LUA
from app.platform.keys import (
    LIKED_MEDIA,
    LOCATION_MEDIA,
    TAG_MEDIA,
    USER_MEDIA,
    liked_media_key,
    list_clock_key,
    location_media_key,
    tag_media_key,
    user_media_key,
)
from app.social.graph import MAY_SEE_LUA, SocialGraph
from models import Like, Photo, PhotoTag, Tag

log = logging.getLogger(__name__)

BUILT, TRUNCATED = "0", "1"
LIST_SIZE = 1000  # members a list keeps: deeper pages are read the long way
LIST_TTL = 3600  # writers keep a list exact; the TTL only ages out cold ones
LOOK_FACTOR = 2  # members looked at per page, at most, per (count + 1)
LIKE_WIDTH = 2 * ID_WIDTH + 1  # "<like id>:<photo id>"
SELF = "self"

# may_see over each member's owner, asked once per distinct owner (a tag's page is
# often one or two people's): a table of booleans by position, or nil and why.
MAY_SEE_EACH_LUA = """
local function may_see_each(uid, owners)
  local distinct, at = {}, {}
  for _, owner in ipairs(owners) do
    if not at[owner] then distinct[#distinct + 1] = owner; at[owner] = #distinct end
  end
  local seen, why = may_see(uid, distinct)
  if not seen then return nil, why end
  local each = {}
  for j, owner in ipairs(owners) do each[j] = seen[at[owner]] end
  return each
end
"""

# KEYS[1]: the token's key. ARGV: the list's key prefix and id ('self': the
# viewer's), count, the exclusive bounds (19 digits, '' for none), and whose
# visibility applies: 'owner' (the id is the owner of every member: checked
# once) or 'each' (per member's owner).
READ_LIST = WARM_LUA + MAY_SEE_LUA + MAY_SEE_EACH_LUA + Template("""
local prefix, id, count, upper, lower, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local token, uid = viewer()
if not uid then return miss('token') end
local liked = '${LIKED}' .. uid
if redis.call('SISMEMBER', liked, BUILT) == 0 then return miss('liked') end
if id == 'self' then id = uid end
local list = prefix .. id
if not redis.call('ZSCORE', list, BUILT) then return miss('list') end
if mode == 'owner' then
  local seen, why = may_see(uid, {id})
  if not seen then return miss(why) end
  if not seen[1] then return miss('hidden') end  -- a 404 or a 400: the long way says which
end

-- Newest first, count + 1 visible ones (the last only says that more follow).
local high = upper == '' and '+' or '(' .. upper
local limit = ${LOOK_FACTOR} * (count + 1)
local shown, hashes, marks, entries = {}, {}, {}, {}
local looked, ended = 0, false
while #shown <= count and not ended do
  if looked >= limit then return miss('scan') end
  local want = math.min(count + 1 - #shown, limit - looked)
  local batch = redis.call('ZREVRANGEBYLEX', list, high, '-', 'LIMIT', looked, want)
  looked = looked + #batch
  if #batch < want then ended = true end
  local photos, at, mkeys = {}, {}, {}
  for _, member in ipairs(batch) do
    if member == BUILT then ended = true; break end
    if member == '${TRUNCATED}' then return miss('truncated') end  -- the rest is not in Redis
    local mark, photo = member, member
    if #member == ${LIKE_WIDTH} then mark, photo = string.sub(member, 1, 19), string.sub(member, 21)
    elseif #member ~= 19 then return miss('width') end
    if lower ~= '' and mark <= lower then ended = true; break end
    photos[#photos + 1] = photo; at[#at + 1] = mark; mkeys[#mkeys + 1] = '${RENDERED_MEDIA}' .. photo
  end
  if #photos > 0 then
    local values, found, owners = redis.call('MGET', unpack(mkeys)), {}, {}
    for i = 1, #photos do
      local value = values[i]
      if not value or held(value) then return miss('media') end
      if value ~= GONE then  -- deleted: the long way's join drops it too
        local owner, digest = entry_fields(value)
        if not owner then return miss('media') end
        found[#found + 1] = {i, value, digest}; owners[#owners + 1] = owner
      end
    end
    local seen
    if mode ~= 'owner' and #owners > 0 then
      local why
      seen, why = may_see_each(uid, owners)
      if not seen then return miss(why) end
    end
    for j, f in ipairs(found) do
      if not seen or seen[j] then
        local i = f[1]
        shown[#shown + 1] = photos[i]; marks[#marks + 1] = at[i]; entries[#entries + 1] = f[2]; hashes[#hashes + 1] = f[3]
      end
    end
  end
end
local next = ''
if #shown > count then
  next = marks[count]
  shown[count + 1], hashes[count + 1], entries[count + 1] = nil, nil, nil
end
local users, wanted = {}, {}
for _, entry in ipairs(entries) do add_users(entry, users, wanted) end
return media_reply(token, next, liked, shown, hashes, users)
""").substitute(vars(keys), LOOK_FACTOR=LOOK_FACTOR, TRUNCATED=TRUNCATED, LIKE_WIDTH=LIKE_WIDTH)

# /media/popular: the best ARGV[1] of the ranking, those the viewer may see.
READ_POPULAR = WARM_LUA + MAY_SEE_LUA + MAY_SEE_EACH_LUA + Template("""
local token, uid = viewer()
if not uid then return miss('token') end
local liked = '${LIKED}' .. uid
if redis.call('SISMEMBER', liked, BUILT) == 0 then return miss('liked') end
local ids = redis.call('ZREVRANGE', '${POPULAR}', 0, tonumber(ARGV[1]) - 1)
local found, owners, mkeys = {}, {}, {}
for i, id in ipairs(ids) do
  if #id ~= 19 then return miss('width') end
  mkeys[i] = '${RENDERED_MEDIA}' .. id
end
if #ids > 0 then
  local values = redis.call('MGET', unpack(mkeys))
  for i = 1, #ids do
    local value = values[i]
    if not value or held(value) then return miss('media') end
    if value ~= GONE then
      local owner, digest = entry_fields(value)
      if not owner then return miss('media') end
      found[#found + 1] = {ids[i], value, digest}; owners[#owners + 1] = owner
    end
  end
end
local seen, why = may_see_each(uid, owners)
if not seen then return miss(why) end
local shown, hashes, users, wanted = {}, {}, {}, {}
for j, f in ipairs(found) do
  if seen[j] then
    shown[#shown + 1] = f[1]; hashes[#hashes + 1] = f[3]
    add_users(f[2], users, wanted)
  end
end
return media_reply(token, '', liked, shown, hashes, users)
""").substitute(vars(keys))

# A rebuilt list. KEYS: its clock, the list. ARGV: since (µs, taken before the
# query), the TTL, the members. Refused when a writer stamped the clock since.
STORE_LIST = """
local changed = redis.call('GET', KEYS[1])
if changed and tonumber(changed) >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[2])
for start = 3, #ARGV, 500 do
  local args = {}
  for i = start, math.min(#ARGV, start + 499) do args[#args + 1] = 0; args[#args + 1] = ARGV[i] end
  redis.call('ZADD', KEYS[2], unpack(args))
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""

# After a commit: member ARGV[2] joins ('+') or leaves ('-') the lists KEYS[1..n]
# that exist, and their clocks KEYS[n+1..2n] are stamped. ARGV[3]: LIST_SIZE.
# A truncated list ("1") keeps its newest LIST_SIZE and takes nothing older than them.
LIST_CHANGED = STAMP_LUA + Template("""
local half, member, size = #KEYS / 2, ARGV[2], tonumber(ARGV[3])
for i = 1, half do
  local key = KEYS[i]
  if redis.call('EXISTS', key) == 1 then
    if ARGV[1] == '-' then
      redis.call('ZREM', key, member)
    else
      local truncated = redis.call('ZSCORE', key, '${TRUNCATED}')
      local lowest = truncated and redis.call('ZRANGE', key, 2, 2)[1]
      if not (lowest and member < lowest) then
        redis.call('ZADD', key, 0, member)
        local real = redis.call('ZCARD', key) - (truncated and 2 or 1)
        if real > size then
          redis.call('ZADD', key, 0, '${TRUNCATED}')
          redis.call('ZREMRANGEBYRANK', key, 2, 1 + real - size)
        end
      end
    end
  end
  stamp(KEYS[half + i])
end
""").substitute(TRUNCATED=TRUNCATED)


def _bound(value: int | None, *, upper: bool) -> str | None:
    """A bound as the script compares it: 19 digits, '' for none; None when it
    cannot be (the long way pages it). Every id is 19 digits, so a lower bound
    below them all is no bound."""
    if value is None:
        return ""
    text = str(value)
    if len(text) == ID_WIDTH:
        return text
    if not upper and value < 10 ** (ID_WIDTH - 1):
        return ""
    return None


def like_member(like_id: int, photo_id: int) -> str:
    return f"{like_id}:{photo_id}"


class WarmLists:
    def __init__(self, rendered: RenderedFeed, graph: SocialGraph, feeds: FeedManager) -> None:
        self.rendered = rendered
        self.graph = graph
        self.feeds = feeds
        self.media_reader = feeds.media
        self.list_size = LIST_SIZE
        self.redis = redis = rendered.redis
        self._read_list = redis.register_script(READ_LIST)
        self._read_popular = redis.register_script(READ_POPULAR)
        self._store_list = redis.register_script(STORE_LIST)
        self._list_changed = redis.register_script(LIST_CHANGED)

    # -- the warm tries: one EVALSHA each ----------------------------------------
    def user_media(self, token_key: str, owner: int | str, count: int, upper: int | None, lower: int | None,
                   base: str) -> Rendered | Miss:
        """GET /users/{owner}/media/recent (`owner`: an id or 'self')."""
        return self._list("user_media", token_key, USER_MEDIA, owner, count, upper, lower, "owner", base)

    def tag_media(self, token_key: str, name: str, count: int, upper: int | None, lower: int | None,
                  base: str) -> Rendered | Miss:
        """GET /tags/{name}/media/recent (`name`: normalized)."""
        return self._list("tag_media", token_key, TAG_MEDIA, name, count, upper, lower, "each", base)

    def location_media(self, token_key: str, location_id: int, count: int, upper: int | None,
                       lower: int | None, base: str) -> Rendered | Miss:
        return self._list("location_media", token_key, LOCATION_MEDIA, location_id, count, upper, lower, "each",
                          base)

    def liked_media(self, token_key: str, count: int, max_like_id: int | None, base: str) -> Rendered | Miss:
        """GET /users/self/media/liked: the cursor is a like id."""
        return self._list("liked_media", token_key, LIKED_MEDIA, SELF, count, max_like_id, None, "each", base)

    def popular(self, token_key: str, count: int, base: str) -> Rendered | Miss:
        return self.rendered.warm_read("popular", self._read_popular, token_key, [count], base)

    def _list(self, read: str, token_key: str, prefix: str, list_id, count: int, upper, lower, mode: str,
              base: str) -> Rendered | Miss:
        high, low = _bound(upper, upper=True), _bound(lower, upper=False)
        if high is None or low is None:
            return Miss("width", 0)
        return self.rendered.warm_read(read, self._read_list, token_key, [prefix, list_id, count, high, low, mode], base)

    # -- the long way: the page's media objects, and what the next read needs ----------
    # `ids`: the page the long way's query found. The media objects of the page and of
    # the members the script will look at are hydrated in one batch, and the latter stored.
    def user_media_page(self, session: Session, viewer_id: int, miss: Miss, owner_id: int, ids: list[int],
                        count: int, upper: int | None, lower: int | None, base: str) -> list[dict]:
        query = (select(Photo.id).where(Photo.user_id == owner_id, Photo.status == "ready")
                 .order_by(Photo.id.desc()))
        return self._page(session, viewer_id, miss, ids, user_media_key(owner_id), query, count, upper, lower, base)

    def tag_media_page(self, session: Session, viewer_id: int, miss: Miss, name: str, ids: list[int],
                       count: int, upper: int | None, lower: int | None, base: str) -> list[dict]:
        query = (select(PhotoTag.photo_id).join(Tag, Tag.id == PhotoTag.tag_id)
                 .join(Photo, Photo.id == PhotoTag.photo_id)
                 .where(Tag.name == name, Photo.status == "ready").order_by(PhotoTag.photo_id.desc()))
        return self._page(session, viewer_id, miss, ids, tag_media_key(name), query, count, upper, lower, base)

    def location_media_page(self, session: Session, viewer_id: int, miss: Miss, location_id: int,
                            ids: list[int], count: int, upper: int | None, lower: int | None,
                            base: str) -> list[dict]:
        query = (select(Photo.id).where(Photo.location_id == location_id, Photo.status == "ready")
                 .order_by(Photo.id.desc()))
        return self._page(session, viewer_id, miss, ids, location_media_key(location_id), query, count, upper,
                          lower, base)

    def liked_media_page(self, session: Session, viewer_id: int, miss: Miss, ids: list[int], count: int,
                         max_like_id: int | None, base: str) -> list[dict]:
        query = (select(Like.id, Like.photo_id).join(Photo, Photo.id == Like.photo_id)
                 .where(Like.user_id == viewer_id).order_by(Like.id.desc()))
        return self._page(session, viewer_id, miss, ids, liked_media_key(viewer_id), query, count, max_like_id,
                          None, base, members=lambda row: like_member(row.id, row.photo_id))

    def popular_page(self, session: Session, viewer_id: int, miss: Miss, ranked: list[int], ids: list[int],
                     base: str) -> list[dict]:
        """`ranked`: the ranking the long way read; `ids`: those of them the viewer may see."""
        return self._objects(session, viewer_id, miss, ids, dict.fromkeys(ranked) if miss.since else None, base)

    def _page(self, session: Session, viewer_id: int, miss: Miss, ids: list[int], key: str, query, count: int,
              upper: int | None, lower: int | None, base: str, members=None) -> list[dict]:
        window: dict[int, str] | None = None
        high, low = _bound(upper, upper=True), _bound(lower, upper=False)
        if miss.since and high is not None and low is not None:  # else nothing could be stored
            try:
                window = self._window(key, count, high, low)
                if window is None:
                    rows = session.execute(query.limit(self.list_size + 1)).all()
                    self._store(key, [members(row) if members else str(row[0]) for row in rows], miss.since)
                    window = self._window(key, count, high, low)  # None: refused, the next read builds it
            except RedisError:
                log.warning("list %s of user %s: not warmed", key, viewer_id, exc_info=True)
                window = None
        return self._objects(session, viewer_id, miss, ids, window, base, key)

    def _store(self, key: str, members: list[str], since: int) -> None:
        listed = [BUILT, *members[:self.list_size]] + ([TRUNCATED] if len(members) > self.list_size else [])
        self._store_list(keys=[list_clock_key(key), key], args=[since, LIST_TTL, *listed])

    def _window(self, key: str, count: int, high: str, low: str) -> dict[int, str] | None:
        """The members READ_LIST looks at for this page, at most (photo id: member); None
        when the list is not built."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zscore(key, BUILT)
        pipe.zrevrangebylex(key, f"({high}" if high else "+", "-", start=0, num=LOOK_FACTOR * (count + 1))
        built, found = pipe.execute()
        if built is None:
            return None
        window: dict[int, str] = {}
        for member in found:
            if member in (BUILT, TRUNCATED):
                break
            mark, _, photo = member.partition(":")
            if low and mark <= low:
                break
            window[int(photo or mark)] = member
        return window

    def _objects(self, session: Session, viewer_id: int, miss: Miss, ids: list[int],
                 window: dict[int, str] | None, base: str, key: str | None = None) -> list[dict]:
        """The page's media objects; and for the window's photos (every viewer's view) their
        mi:/ui:/fragments, the viewer's liked:/following:, the graph for their owners (an empty
        window too: the script needs the viewer's sets). None: nothing to store.
        Photos of the window that are gone leave `key`'s list."""
        media = self.media_reader
        photo_ids = list(dict.fromkeys([*ids, *(window or ())]))
        entries = media.entries(session, photo_ids)
        users = media.page_users(session, entries, [i for i in photo_ids if i in entries])
        objects = media.by_ids(session, ids, viewer_id, entries, users)
        if window is None:
            return objects
        ready = [i for i in window if i in entries and entries[i]["body"]["status"] == "ready"]
        gone = [i for i in window if i not in entries]
        try:
            if gone and key is not None:  # a liked photo deleted since (ids are never reused)
                self.redis.zrem(key, *(window[i] for i in gone))
            self.rendered.warm(session, viewer_id, miss, FeedPage(ready, entries, None, gone), users, base)
            self.graph.warm(session, viewer_id, [entries[i]["user_id"] for i in ready], miss.since)
        except RedisError:
            log.warning("warm list of user %s: not stored", viewer_id, exc_info=True)
        return objects

    # -- writers, after their commit (app.platform.changes) ----------------------------
    def photo_listed(self, photo_id: int, owner_id: int, tags: list[str], location_id: int | None,
                     listed: bool) -> None:
        """A photo was published (listed) or a published one deleted: the lists of its
        owner, tags and location follow."""
        lists = [user_media_key(owner_id), *(tag_media_key(t) for t in tags)]
        if location_id is not None:
            lists.append(location_media_key(location_id))
        self._patch(lists, str(photo_id), listed)

    def like_listed(self, user_id: int, like_id: int, photo_id: int, liked: bool) -> None:
        """A like (liked) or unlike was committed: the liker's list follows."""
        self._patch([liked_media_key(user_id)], like_member(like_id, photo_id), liked)

    def _patch(self, lists: list[str], member: str, added: bool) -> None:
        self._list_changed(keys=lists + [list_clock_key(k) for k in lists],
                           args=["+" if added else "-", member, self.list_size])
