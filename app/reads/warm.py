"""The warm read scripts and what their misses store.

A script answers only what it can prove from Redis: anything cold, held by a
writer, or any answer but a plain 200 (a 404, a private account's media to a
stranger) is a miss, and the route's long way decides. So the warm path can
show less than the database would, never more.
"""
from __future__ import annotations

import logging
from string import Template

from redis.exceptions import RedisError
from sqlalchemy.orm import Session

from app.feeds.manager import FeedManager, FeedPage
from app.feeds.rendered import ID_WIDTH, WARM_LUA, Miss, Rendered, RenderedFeed
from app.platform import keys
from app.social.graph import MAY_SEE_LUA, SocialGraph

log = logging.getLogger(__name__)

# One media object. KEYS[1]: the token's key; ARGV[1]: the photo id (19 digits).
READ_MEDIA = WARM_LUA + MAY_SEE_LUA + Template("""
local token, uid = viewer()
if not uid then return miss('token') end
local liked = '${LIKED}' .. uid
if redis.call('SISMEMBER', liked, BUILT) == 0 then return miss('liked') end
local value = redis.call('GET', '${RENDERED_MEDIA}' .. ARGV[1])
if not value or held(value) or value == GONE then return miss('media') end
local owner, digest = entry_fields(value)
if not owner then return miss('media') end
local seen, why = may_see(uid, {owner})
if not seen then return miss(why) end
if not seen[1] then return miss('hidden') end
local users = {}
add_users(value, users, {})
return media_reply(token, '', liked, {ARGV[1]}, {digest}, users)
""").substitute(vars(keys))


class WarmReads:
    def __init__(self, rendered: RenderedFeed, graph: SocialGraph, feeds: FeedManager) -> None:
        self.rendered = rendered
        self.graph = graph
        self.feeds = feeds
        self.media_reader = feeds.media
        redis = rendered.redis
        self._read_media = redis.register_script(READ_MEDIA)

    # -- GET /media/{id} ---------------------------------------------------------
    def media(self, token_key: str, photo_id: int, base: str) -> Rendered | Miss:
        if len(str(photo_id)) != ID_WIDTH:  # never indexed (app.feeds.rendered)
            return Miss("width", 0)
        return self.rendered.warm_read("media", self._read_media, token_key, [str(photo_id)], base)

    def media_object(self, session: Session, viewer_id: int, miss: Miss, photo, base: str) -> dict:
        """The long way: the media object of a photo the viewer may see (the caller
        checked), and, when it is ready, what the next read needs stored."""
        media = self.media_reader
        entries = media.entries(session, [photo.id], {photo.id: photo})
        users = media.page_users(session, entries, [photo.id])
        [obj] = media.by_ids(session, [photo.id], viewer_id, entries, users)
        if photo.status == "ready" and miss.since:
            self._warm(session, viewer_id, miss, FeedPage([photo.id], entries, None), users, base, [photo.user_id])
        return obj

    def _warm(self, session: Session, viewer_id: int, miss: Miss, page: FeedPage, users, base: str,
              owner_ids) -> None:
        self.rendered.warm(session, viewer_id, miss, page, users, base)
        try:
            self.graph.warm(session, viewer_id, owner_ids, miss.since)
        except RedisError:
            log.warning("warm read of user %s: the social graph not stored", viewer_id, exc_info=True)
