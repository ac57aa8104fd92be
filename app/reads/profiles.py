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
from functools import partial
from string import Template

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from app.feeds.manager import FeedManager
from app.feeds.rendered import (FILL, HELD_TTL, HOLD, USER_TTL, WARM_LUA, WARM_READS, Miss, Rendered,
                                RenderedFeed, fragment_hash, render_json)
from app.platform import keys
from app.platform.keys import following_key, fragment_key, private_key, relations_key, rendered_profile_key
from app.social.graph import BUILT, MAY_SEE_LUA, SocialGraph
from app.social.relationships import relationship
from models import User
from models.ids import MAX_ID

log = logging.getLogger(__name__)

PROFILE_TTL = USER_TTL  # the forgets keep it fresh; the TTL only ages out cold ones

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
        self._fill = redis.register_script(FILL)
        self._hold = redis.register_script(HOLD)

    def _run(self, read: str, script, token_key: str, args: list, base: str) -> Rendered | Miss:
        try:
            reply = self.rendered.run(script, [token_key], args)
        except RedisError:  # the long way still answers
            log.warning("warm read %s: Redis failed", read, exc_info=True)
            return Miss("redis", 0)
        return self.rendered.answer(reply, base, read)

    # -- GET /users/{id}, /users/self ------------------------------------------
    def user(self, token_key: str, user_id: str, base: str) -> Rendered | Miss:
        """The full user object, warm; `user_id` as the route got it ("self" or an id)."""
        target = "" if user_id == "self" else warm_id(user_id)
        if target is None:
            return Miss("id", 0)
        return self._run("profile", self._read_profile, token_key, [target], base)

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
        try:
            reply = self.rendered.run(self._read_relationship, [token_key], [target])
        except RedisError:
            log.warning("warm read relationship: Redis failed", exc_info=True)
            return Miss("redis", 0)
        fields = reply.split("\n")
        if fields[0] != "ok":
            _, why, since = fields
            WARM_READS.labels("relationship", f"miss:{why}").inc()
            return Miss(why, int(since))
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

    # -- after a commit ---------------------------------------------------------
    def forget(self, user_ids) -> None:
        """What these users' full objects show changed (committed)."""
        user_ids = list(dict.fromkeys(user_ids))
        if user_ids:
            self._hold(keys=[rendered_profile_key(i) for i in user_ids], args=[HELD_TTL])
