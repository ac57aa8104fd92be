"""Warm profile reads: a user's full object (GET /users/{id}, /users/self) in one
Redis round trip and no SQL, as app.reads.warm does for a media object.

What Redis holds for them, beside app.feeds.rendered's keys and the social
graph's (app.social.graph):

  uf:{user}  the hash of the user's rendered full object (Serializer.user_full,
             counts included); the fragment itself is rb:{hash}. Every writer of
             what it shows (a profile edit; a follow, unfollow, approval or block
             that moves a count; a photo published or deleted) forgets it after
             its commit (app.platform.changes.profiles_changed): a tombstone, so
             that a reader that missed before the commit cannot store the old
             object back (the rule of app.feeds.rendered's FILL).

As everywhere in app.reads, a script answers only a plain 200 it can prove
from Redis; a viewer the user blocked, a user not rendered, anything cold is a
miss, and the route's long way decides.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from string import Template

from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.engagement import activity
from app.feeds.activity import activity_comments, activity_json, activity_objects
from app.feeds.manager import FeedManager, FeedPage
from app.feeds.rendered import (FIELD_END, FILL, HELD_TTL, HOLD, LIKED_REF, USER_TTL, WARM_LUA, WARM_READS, Miss,
                                Rendered, RenderedFeed, fragment_hash, placeholder, render_json)
from app.platform import keys
from app.platform.keys import (activity_entry_key, activity_seen_key, following_key, fragment_key, private_key,
                               relations_key, rendered_profile_key)
from app.social.graph import BUILT, MAY_SEE_LUA, SocialGraph
from app.social.relationships import relationship
from models import Photo, User
from models.ids import MAX_ID

log = logging.getLogger(__name__)

PROFILE_TTL = USER_TTL  # the forgets keep it fresh; the TTL only ages out cold ones
# An activity's object never changes (what it shows that can is apart: its actor's
# summary, its media); a removed one leaves activity:{user}, so nothing names its entry.
ACTIVITY_ENTRY_TTL = 24 * 3600
MEDIA_REF = "M"  # the placeholder of an activity's media object
_LIKED_JSON = {"1": "true", "0": "false"}


def _fill(parts: list[str], refs: dict[str, str]) -> str:
    """A fragment cut at its placeholders (RenderedFeed.fragments), filled in."""
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        out.append(refs[parts[i]])
        out.append(parts[i + 1])
    return "".join(out)


@dataclass(frozen=True)
class RenderedActivity(Rendered):
    seen: int | None = None  # the newest activity id, when the app is to mark it seen (WarmProfiles.mark_seen)

# A reply of whole fragments (no placeholder to fill), as RenderedFeed.answer reads it.
PROFILES_LUA = WARM_LUA + """
local function fragments_reply(token, hashes)
  return table.concat({'ok', token, '', string.rep('0', #hashes), '0', unpack(hashes)}, '\\n')
end
"""

# KEYS[1]: the token's key; ARGV[1]: the user's id ('' for the viewer's own).
READ_PROFILE = PROFILES_LUA + Template("""
local token, uid = viewer()
if not uid then return miss('token') end
local target = ARGV[1] ~= '' and ARGV[1] or uid
if target ~= uid then
  -- Whom the user blocked is told it does not exist (the long way's 404).
  local relations = redis.call('HMGET', '${RELATIONS}' .. uid, '${BUILT}', target)
  if not relations[1] then return miss('relations') end
  if relations[2] and string.find(relations[2], 'B') then return miss('hidden') end
end
local digest = redis.call('GET', '${RENDERED_PROFILE}' .. target)
if not digest or held(digest) then return miss('profile') end
return fragments_reply(token, {digest})
""").substitute(vars(keys), BUILT=BUILT)


# How the viewer and another user relate (relationships.relationship), from the
# social graph: following:{both}, rel:{both}, private:{target}.
# KEYS[1]: the token's key; ARGV[1]: the target's id.
READ_RELATIONSHIP = PROFILES_LUA + MAY_SEE_LUA + Template("""
local token, uid = viewer()
if not uid then return miss('token') end
local target = ARGV[1]
if target == uid then return miss('self') end  -- the long way's 400
local built, why = relations_built(uid)
if not built then return miss(why) end
built, why = relations_built(target)
if not built then return miss(why) end
local mine = redis.call('HGET', '${RELATIONS}' .. uid, target) or ''
if string.find(mine, 'B') then return miss('hidden') end  -- the long way's 404
-- Stored from the user's row only: the target exists.
local private = redis.call('GET', '${PRIVATE}' .. target)
if not private or held(private) then return miss('private') end
local outgoing, incoming = 'none', 'none'
if redis.call('SISMEMBER', '${FOLLOWING}' .. uid, target) == 1 then outgoing = 'follows'
elseif string.find(mine, 'p') then outgoing = 'requested' end
if string.find(mine, 'b') then incoming = 'blocked_by_you'
elseif redis.call('SISMEMBER', '${FOLLOWING}' .. target, uid) == 1 then incoming = 'followed_by'
elseif string.find(redis.call('HGET', '${RELATIONS}' .. target, uid) or '', 'p') then incoming = 'requested_by' end
return table.concat({'ok', token, '{"outgoing_status":"' .. outgoing .. '","incoming_status":"' .. incoming
  .. '","target_user_is_private":' .. (private == '1' and 'true' or 'false') .. '}'}, '\\n')
""").substitute(vars(keys))

# A page of the viewer's activity (activity.page, in Redis): the ids from
# activity:{viewer}, each one's ai: entry, blocks either way with its actor,
# whether the viewer may see its photo (mi: and the graph), the viewer's likes.
# KEYS[1]: the token's key; ARGV: count, max_id (20 digits, as activity:{u}'s
# members, or ''), the copy's cap, mark ('1': this first page marks the activity
# seen here, for a request whose signature needs no check), the seen mark's TTL.
READ_ACTIVITY = PROFILES_LUA + MAY_SEE_LUA + Template("""
local token, uid = viewer()
if not uid then return miss('token') end
local count, max_id = tonumber(ARGV[1]), ARGV[2]
local key = '${ACTIVITY}' .. uid
if not redis.call('ZSCORE', key, '0') then return miss('activity') end
local ids = redis.call('ZREVRANGEBYLEX', key, max_id ~= '' and ('(' .. max_id) or '+', '(0', 'LIMIT', 0, count + 1)
if #ids <= count and redis.call('ZCARD', key) > tonumber(ARGV[3]) then return miss('older') end  -- the table's
local more = #ids > count
if more then ids[#ids] = nil end
local built, why = relations_built(uid)
if not built then return miss(why) end

local entries, lines, users, wanted = {}, {}, {}, {}
if #ids > 0 then
  local akeys = {}
  for i, id in ipairs(ids) do akeys[i] = '${ACTIVITY_ENTRY}' .. string.match(id, '^0*(%d+)$$') end  -- unpadded
  local values, actors = redis.call('MGET', unpack(akeys)), {}
  for i, value in ipairs(values) do
    local actor, photo, digest
    if value then actor, photo, digest = string.match(value, '^(%d+)\\4(%d*)\\4(%x+)$$') end
    if not actor then return miss('entry') end
    entries[i] = {actor = actor, photo = photo, digest = digest}
    actors[i] = actor
  end
  -- Activity by users blocked either way is left out; so is activity whose photo the viewer may not see.
  local relations = redis.call('HMGET', '${RELATIONS}' .. uid, unpack(actors))
  local with_photo, mkeys, owners = {}, {}, {}
  for i, e in ipairs(entries) do
    e.shown = not (relations[i] and string.find(relations[i], '[bB]'))
    if e.shown and e.photo ~= '' then with_photo[#with_photo + 1] = e; mkeys[#mkeys + 1] = '${RENDERED_MEDIA}' .. e.photo end
  end
  if #mkeys > 0 then
    local mvalues = redis.call('MGET', unpack(mkeys))
    for j, value in ipairs(mvalues) do
      if not value or held(value) or value == GONE then return miss('media') end
      local owner, digest = entry_fields(value)
      if not owner then return miss('media') end
      owners[j] = owner; with_photo[j].media = value; with_photo[j].media_digest = digest
    end
    local seen, why = may_see(uid, owners)
    if not seen then return miss(why) end
    for j, e in ipairs(with_photo) do e.shown = seen[j] end
  end
  local photos = {}
  for _, e in ipairs(entries) do
    if e.shown then
      if not wanted[e.actor] then wanted[e.actor] = true; users[#users + 1] = e.actor end
      if e.media then add_users(e.media, users, wanted); photos[#photos + 1] = e.photo end
    end
  end
  local likes = {}
  if #photos > 0 then
    local liked = '${LIKED}' .. uid
    if redis.call('SISMEMBER', liked, BUILT) == 0 then return miss('liked') end
    likes = redis.call('SMISMEMBER', liked, unpack(photos))
  end
  local k = 0
  for _, e in ipairs(entries) do
    if e.shown then
      if e.media then k = k + 1; lines[#lines + 1] = e.digest .. ' ' .. e.media_digest .. ' ' .. likes[k]
      else lines[#lines + 1] = e.digest end
    end
  end
end
local reply = {'ok', token, more and ids[#ids] or '', '', #users}
if not add_user_hashes(reply, users) then return miss('users') end
for _, line in ipairs(lines) do reply[#reply + 1] = line end
-- The newest page read: what the push badge counts starts again (activity.mark_seen).
if max_id == '' and #ids > 0 then
  local newest = string.match(ids[1], '^0*(%d+)$$')
  if ARGV[4] == '1' and not string.find(token, '"e":%s*true') then
    redis.call('SET', '${ACTIVITY_SEEN}' .. uid, newest, 'EX', ARGV[5])
  else
    reply[4] = newest  -- the app marks it once the request's signature is checked
  end
end
return table.concat(reply, '\\n')
""").substitute(vars(keys))


def warm_id(raw: str) -> str | None:
    """A user id as the scripts compare it (its decimal digits); None for any other
    spelling, which the long way parses (or refuses)."""
    if raw.isascii() and raw.isdigit() and str(int(raw)) == raw and int(raw) <= MAX_ID:
        return raw
    return None


class WarmProfiles:
    def __init__(self, rendered: RenderedFeed, graph: SocialGraph, feeds: FeedManager) -> None:
        self.rendered = rendered
        self.graph = graph
        self.feeds = feeds
        self.serializer = feeds.media.serializer
        redis = self.redis = rendered.redis
        self._read_profile = redis.register_script(READ_PROFILE)
        self._read_relationship = redis.register_script(READ_RELATIONSHIP)
        self._read_activity = redis.register_script(READ_ACTIVITY)
        self._fill = redis.register_script(FILL)
        self._hold = redis.register_script(HOLD)

    # -- GET /users/{id}, /users/self ------------------------------------------
    def user(self, token_key: str, user_id: str, base: str) -> Rendered | Miss:
        """The full user object, warm; `user_id` as the route got it ("self" or an id)."""
        target = "" if user_id == "self" else warm_id(user_id)
        if target is None:
            return Miss("id", 0)
        return self.rendered.warm_read("profile", self._read_profile, token_key, [target], base)

    def user_full(self, session: Session, viewer_id: int, miss: Miss, user: User, base: str) -> dict:
        """The long way: the full object of a user the viewer may see (the caller
        checked), and what the next read needs stored."""
        if miss.since:
            try:
                self._warm_profile(session, viewer_id, miss, user, base)
            except RedisError:
                log.warning("profile of user %s: not stored", user.id, exc_info=True)
        return self.serializer.user_full(user, base)

    def _warm_profile(self, session: Session, viewer_id: int, miss: Miss, user: User, base: str) -> None:
        text = render_json(partial(self.serializer.user_full, user))
        digest = fragment_hash(text)
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(fragment_key(digest), text, ex=PROFILE_TTL + HELD_TTL)  # named by content: unconditional
        self._fill(keys=[rendered_profile_key(user.id)], args=[miss.since, digest, PROFILE_TTL], client=pipe)
        pipe.hexists(relations_key(viewer_id), BUILT)
        *_, relations_built = pipe.execute()
        self.rendered.keep({digest: text}, base)
        if user.id != viewer_id and not relations_built:
            self.graph.build_relations(session, viewer_id, miss.since)

    # -- GET /users/{id}/relationship --------------------------------------------
    def relationship(self, token_key: str, user_id: str) -> Rendered | Miss:
        """How the viewer and the user relate, warm: the JSON object as `data`."""
        target = warm_id(user_id)
        if target is None:
            return Miss("id", 0)
        fields = self.rendered.script_fields("relationship", self._read_relationship, token_key, [target])
        if isinstance(fields, Miss):
            return fields
        WARM_READS.labels("relationship", "rendered").inc()
        return Rendered(fields[1], fields[2], "")

    def relationship_object(self, session: Session, viewer_id: int, miss: Miss, target: User) -> dict:
        """The long way (the caller checked the target may be asked about), and what
        the next read needs of the graph: both users' follows and relations, the
        target's privacy."""
        since = miss.since
        if since:
            try:
                self._warm_graph(session, viewer_id, target, since)
            except RedisError:
                log.warning("relationship of user %s: the graph not stored", viewer_id, exc_info=True)
        return relationship(session, viewer_id, target)

    def _warm_graph(self, session: Session, viewer_id: int, target: User, since: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for user_id in (viewer_id, target.id):
            pipe.sismember(following_key(user_id), BUILT)
            pipe.hexists(relations_key(user_id), BUILT)
        pipe.exists(private_key(target.id))
        *built, has_privacy = pipe.execute()
        for user_id, following_built, relations_built in zip((viewer_id, target.id), built[::2], built[1::2]):
            if not following_built:
                self.feeds.build_following(session, user_id, since)
            if not relations_built:
                self.graph.build_relations(session, user_id, since)
        if not has_privacy:
            self.graph.store_privacy({target.id: target.is_private}, since)

    # -- GET /users/self/activity --------------------------------------------------
    def activity(self, token_key: str, count: int, max_id: int | None, base: str,
                 signed: bool) -> RenderedActivity | Miss:
        """A page of the viewer's activity, warm: the objects as `data` (a JSON array).
        `signed`: the request sent a sig (checked after the script: the newest page's
        seen mark is then left to mark_seen)."""
        first = max_id is None
        args = [count, "" if first else f"{max_id:020d}", activity.CAP, "1" if first and not signed else "0",
                activity.TTL_SECONDS]
        fields = self.rendered.script_fields("activity", self._read_activity, token_key, args)
        if isinstance(fields, Miss):
            return fields
        _, token, next_cursor, seen, user_count, *rest = fields
        user_count = int(user_count)
        user_ids, lines = rest[:user_count], [line.split(" ") for line in rest[2 * user_count:]]
        hashes = rest[user_count:2 * user_count] + [line[0] for line in lines] + [line[1] for line in lines if len(line) > 1]
        fragments = self.rendered.fragments(hashes, base)
        if fragments is None:
            WARM_READS.labels("activity", "miss:fragments").inc()
            return Miss("fragments", self.feeds.clocks.now())
        refs = {user_id: fragments[i][0] for i, user_id in enumerate(user_ids)}
        objects, media = [], iter(fragments[user_count + len(lines):])
        for parts, line in zip(fragments[user_count:], lines):
            media_json = _fill(next(media), {**refs, LIKED_REF: _LIKED_JSON[line[2]]}) if len(line) > 1 else "null"
            objects.append(_fill(parts, {**refs, MEDIA_REF: media_json}))
        WARM_READS.labels("activity", "rendered").inc()
        return RenderedActivity(token, f"[{','.join(objects)}]", next_cursor, int(seen) if seen else None)

    def mark_seen(self, viewer_id: int, warm: RenderedActivity) -> None:
        """The seen mark a warm read of the newest page left to the app (a signed
        request's, once its signature passed): one more Redis call."""
        if warm.seen is not None:
            self.redis.set(activity_seen_key(viewer_id), warm.seen, ex=activity.TTL_SECONDS)

    def activity_page(self, session: Session, viewer_id: int, miss: Miss, count: int, max_id: int | None,
                      base: str) -> tuple[list[dict], int | None]:
        """The long way (activity.page, activity_objects), then what the next read needs stored."""
        shown, cursor, looked_at = activity.page_rows(session, self.redis, viewer_id, count, max_id)
        if max_id is None:  # the newest page: what a push badge counts starts again
            activity.mark_seen(self.redis, viewer_id)
        objects = activity_objects(self.feeds.media, session, shown, viewer_id)
        if miss.since:
            try:
                self._warm_activity(session, viewer_id, miss, looked_at, base)
            except RedisError:
                log.warning("activity of user %s: not stored", viewer_id, exc_info=True)
        return objects, cursor

    def _warm_activity(self, session: Session, viewer_id: int, miss: Miss, rows: list, base: str) -> None:
        """The ai: entries of every row the page looked at (shown or not: the script
        looks at them all), and the media, users and graph they show."""
        reader = self.feeds.media
        comments = activity_comments(session, rows)
        fragments, index = {}, {}
        for row in rows:
            media = placeholder(MEDIA_REF) if row.photo_id else None
            text = render_json(lambda _base, row=row, media=media: activity_json(
                self.serializer, row, placeholder(str(row.actor_id)), media, comments.get(row.comment_id)))
            digest = fragment_hash(text)
            fragments[digest] = text
            index[activity_entry_key(row.id)] = (f"{row.actor_id}{FIELD_END}{row.photo_id or ''}{FIELD_END}{digest}",
                                                 ACTIVITY_ENTRY_TTL)
        photo_ids = list(dict.fromkeys(row.photo_id for row in rows if row.photo_id))
        entries = reader.entries(session, photo_ids)
        # Only a ready photo is indexed (as the feed's are); the row says, not a cached body.
        ready_ids = set(session.scalars(select(Photo.id).where(Photo.id.in_(photo_ids), Photo.status == "ready"))) \
            if photo_ids else set()
        ready = [i for i in photo_ids if i in entries and i in ready_ids]
        users = {**reader.page_users(session, entries, ready),
                 **reader.user_summaries(session, {row.actor_id for row in rows})}
        pipe = self.redis.pipeline(transaction=False)
        for digest, text in fragments.items():  # named by content: unconditional, before the entries naming them
            pipe.set(fragment_key(digest), text, ex=ACTIVITY_ENTRY_TTL + HELD_TTL)
        pipe.execute()
        self.rendered.keep(fragments, base)
        self.rendered.warm(session, viewer_id, miss, FeedPage(ready, entries, None), users, base, more=index)
        self.graph.warm(session, viewer_id, [entries[i]["user_id"] for i in ready], miss.since)

    # -- after a commit ---------------------------------------------------------
    def forget(self, user_ids) -> None:
        """What these users' full objects show changed (committed)."""
        user_ids = list(dict.fromkeys(user_ids))
        if user_ids:
            self._hold(keys=[rendered_profile_key(i) for i in user_ids], args=[HELD_TTL])
