"""Warm lists: a photo's comments and likers, a user's followers and followees,
and your follow requests, each in one Redis round trip (app.reads' rule: a
script answers only a plain 200 it can prove from Redis; anything else is a
miss, and the route's long way decides).

What Redis holds for them, beside app.feeds.rendered's and app.social.graph's:

  list:comments:{photo}      its comments, oldest first:           comment id, author id, fragment hash
  list:likes:{photo}         its likes, newest first:              like id, liker id
  list:followed-by:{user}    their followers, newest follow first: follow id, follower id
  list:follows:{user}        whom they follow, newest follow first: follow id, followee id
  list:requested-by:{user}   who asked to follow them, newest first: follow id, asker id

Each is a string: a head ("=" the whole list, "+" only its first LIST_LIMIT
rows), then fixed-width records, each starting with its 19-digit id, which is
the list's cursor. The script pages it with GETRANGE (a binary search finds a
cursor), so a long list is never copied into Lua. A comment is a fragment of
its own (rb:, named by its content) with its author as a placeholder; likers
and follows are user summaries (ui:). So a rename shows at once (forget_users),
and a list changes only when its rows do.

Freshness, as for mi: entries: like and comment writers tombstone their
photo's lists with its entry (RenderedFeed.forget_photos, after the commit);
follow changes tombstone both users' lists (forget_follow_lists). A missed
read rebuilds the list from the database, stored only over an empty key or an
older tombstone (the feed's FILL). Past a truncated list's end a read misses,
and the database answers.

Visibility: a photo's lists need its mi: entry (ready, not deleted) and
may_see of its owner, as GET /media/{id}; a user's follow lists need may_see
of that user (can_view_media); your requests are yours.
"""
from __future__ import annotations

import logging
import uuid
from string import Template

import orjson
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.engagement import reactions
from app.feeds.manager import FeedPage
from app.feeds.rendered import (
    HELD_TTL,
    HOLD,
    ID_WIDTH,
    MEDIA_TTL,
    REF_END,
    REF_START,
    WARM_LUA,
    Miss,
    Rendered,
    RenderedFeed,
    fragment_hash,
)
from app.media.reader import MediaReader, UserSummary
from app.platform import keys
from app.platform.keys import comments_list_key, follow_list_keys, fragment_key, likes_list_key
from app.platform.paging import split_page
from app.social.graph import MAY_SEE_LUA, SocialGraph
from models import Comment, Follow, Like, Photo, User

log = logging.getLogger(__name__)

LIST_LIMIT = 500  # rows stored per list: deeper pages are the database's
LIST_TTL = MEDIA_TTL  # no longer than the fragments a list names (MEDIA_TTL + HELD_TTL)
COMPLETE, TRUNCATED = "=", "+"
USER_RECORD = 2 * ID_WIDTH  # id, user id
COMMENT_RECORD = 2 * ID_WIDTH + 20  # id, author id, fragment hash

# What the list scripts share, after WARM_LUA and MAY_SEE_LUA.
LIST_LUA = WARM_LUA + MAY_SEE_LUA + Template("""
local ID = ${ID_WIDTH}

-- A page of the list under `key`: at most `count` records past `cursor` ('' from
-- the start), and the next cursor ('' at the end); nil and why when Redis cannot tell.
local function list_page(key, width, count, cursor, ascending)
  local head = redis.call('GETRANGE', key, 0, 0)
  if head ~= '${COMPLETE}' and head ~= '${TRUNCATED}' then return nil, 'list' end
  local size = redis.call('STRLEN', key) - 1
  if size % width ~= 0 then return nil, 'list' end
  local n, first = math.floor(size / width), 0
  if cursor ~= '' then  -- the first record past the cursor
    local low, high = 0, n
    while low < high do
      local mid = math.floor((low + high) / 2)
      local id = redis.call('GETRANGE', key, 1 + mid * width, mid * width + ID)
      local past
      if ascending then past = id > cursor else past = id < cursor end
      if past then high = mid else low = mid + 1 end
    end
    first = low
  end
  local last, records = math.min(n, first + count + 1), {}  -- one more tells if more follow
  if last > first then
    local raw = redis.call('GETRANGE', key, 1 + first * width, last * width)
    for at = 1, #raw, width do records[#records + 1] = string.sub(raw, at, at + width - 1) end
  end
  if #records > count then
    records[#records] = nil
    return records, string.sub(records[count], 1, ID)
  end
  if head == '${TRUNCATED}' then return nil, 'deep' end
  return records, ''
end

-- The hashes of these users' rendered summaries, nil when one is not warm.
local function summaries(ids)
  if #ids == 0 then return {} end
  local ukeys = {}
  for i, id in ipairs(ids) do ukeys[i] = '${RENDERED_USER}' .. id end
  local values = redis.call('MGET', unpack(ukeys))
  for i = 1, #ids do
    if not values[i] or held(values[i]) then return nil end
  end
  return values
end

-- media_reply's format (RenderedFeed.answer reads it): the fragments shown and
-- the users they name. No list fragment names the viewer's like: its flags are unused.
local function list_reply(token, next, hashes, users)
  local reply = {'ok', token, next, string.rep('0', #hashes), #users}
  local found = summaries(users)
  if not found then return miss('users') end
  for _, id in ipairs(users) do reply[#reply + 1] = id end
  for _, hash in ipairs(found) do reply[#reply + 1] = hash end
  for _, hash in ipairs(hashes) do reply[#reply + 1] = hash end
  return table.concat(reply, '\\n')
end

-- A page of user records (id, user id) as the users' summaries.
local function users_reply(token, next, records)
  local ids = {}
  for i, record in ipairs(records) do ids[i] = string.sub(record, ID + 1, 2 * ID) end
  local hashes = summaries(ids)
  if not hashes then return miss('users') end
  return list_reply(token, next, hashes, {})
end

-- The owner of photo `id` when it is ready, warm and the viewer may see it (as
-- GET /media/{id}: READ_MEDIA); nil and why otherwise.
local function visible_photo(uid, id)
  local value = redis.call('GET', '${RENDERED_MEDIA}' .. id)
  if not value or held(value) or value == GONE then return nil, 'media' end
  local owner = entry_fields(value)
  if not owner then return nil, 'media' end
  local seen, why = may_see(uid, {owner})
  if not seen then return nil, why end
  if not seen[1] then return nil, 'hidden' end
  return owner
end

-- The user whose graph a list shows: ARGV[1], or the viewer when it is ''; nil
-- and why when the viewer may not see their media (can_view_media).
local function visible_owner(uid)
  local owner = ARGV[1] ~= '' and ARGV[1] or uid
  local seen, why = may_see(uid, {owner})
  if not seen then return nil, why end
  if not seen[1] then return nil, 'hidden' end
  return owner
end
""").substitute(vars(keys), ID_WIDTH=ID_WIDTH, COMPLETE=COMPLETE, TRUNCATED=TRUNCATED)

# KEYS[1]: the token's key. ARGV: the photo id, count, cursor (19 digits or '').
READ_COMMENTS = LIST_LUA + Template("""
local token, uid = viewer()
if not uid then return miss('token') end
local _, why = visible_photo(uid, ARGV[1])
if why then return miss(why) end
local records, next = list_page('${COMMENTS_LIST}' .. ARGV[1], ${COMMENT_RECORD}, tonumber(ARGV[2]), ARGV[3], true)
if not records then return miss(next) end
local hashes, authors, wanted = {}, {}, {}
for i, record in ipairs(records) do
  hashes[i] = string.sub(record, 2 * ID + 1, 2 * ID + 20)
  local author = string.sub(record, ID + 1, 2 * ID)
  if not wanted[author] then wanted[author] = true; authors[#authors + 1] = author end
end
return list_reply(token, next, hashes, authors)
""").substitute(vars(keys), COMMENT_RECORD=COMMENT_RECORD)

# KEYS[1]: the token's key. ARGV: the photo id, count, max_like_id (19 digits or '').
READ_LIKES = LIST_LUA + Template("""
local token, uid = viewer()
if not uid then return miss('token') end
local _, why = visible_photo(uid, ARGV[1])
if why then return miss(why) end
local records, next = list_page('${LIKES_LIST}' .. ARGV[1], ${USER_RECORD}, tonumber(ARGV[2]), ARGV[3], false)
if not records then return miss(next) end
return users_reply(token, next, records)
""").substitute(vars(keys), USER_RECORD=USER_RECORD)

# KEYS[1]: the token's key. ARGV: the user id ('' for the viewer), count, cursor (19 digits or '').
READ_FOLLOW_LIST = Template("""
local token, uid = viewer()
if not uid then return miss('token') end
local owner, why = ${OWNER}
if not owner then return miss(why) end
local records, next = list_page('${LIST}' .. owner, ${USER_RECORD}, tonumber(ARGV[2]), ARGV[3], false)
if not records then return miss(next) end
return users_reply(token, next, records)
""")


def _follow_list_script(list_prefix: str, owner: str) -> str:
    return LIST_LUA + READ_FOLLOW_LIST.substitute(LIST=list_prefix, OWNER=owner, USER_RECORD=USER_RECORD)


# Which follows each list shows: (whose id is the list's user, whose the record's), their status.
FOLLOW_LISTS = {
    "followed-by": (Follow.followee_id, Follow.follower_id, "active", keys.FOLLOWED_BY_LIST),
    "follows": (Follow.follower_id, Follow.followee_id, "active", keys.FOLLOWS_LIST),
    "requested-by": (Follow.followee_id, Follow.follower_id, "pending", keys.REQUESTED_BY_LIST),
}
SCRIPTS = {
    "comments": READ_COMMENTS,
    "likes": READ_LIKES,
    "followed-by": _follow_list_script(keys.FOLLOWED_BY_LIST, "visible_owner(uid)"),
    "follows": _follow_list_script(keys.FOLLOWS_LIST, "visible_owner(uid)"),
    "requested-by": _follow_list_script(keys.REQUESTED_BY_LIST, "uid"),  # always the viewer's own
}

# A comment's author while rendering, unique to this process: no comment's text can hold it.
_AUTHOR = uuid.uuid4().hex


def render_comment(media: MediaReader, comment: Comment) -> str:
    """A comment as a fragment: comment_json with its author as a placeholder."""
    text = orjson.dumps({**media.serializer.comment_json(comment, None), "from": _AUTHOR}).decode()
    return text.replace(f'"{_AUTHOR}"', f"{REF_START}{comment.user_id}{REF_END}")


def _head(rows: list) -> tuple[str, list]:
    """The head of a list stored from `rows` (LIST_LIMIT + 1 of them at most), and the rows it keeps."""
    return (TRUNCATED, rows[:LIST_LIMIT]) if len(rows) > LIST_LIMIT else (COMPLETE, list(rows))


def _wide(*ids) -> bool:
    """Every id as wide as the scripts read them."""
    return all(len(str(i)) == ID_WIDTH for i in ids)


class WarmSocialLists:
    def __init__(self, rendered: RenderedFeed, graph: SocialGraph, media: MediaReader) -> None:
        self.rendered = rendered
        self.graph = graph
        self.media = media
        redis = rendered.redis
        self.redis = redis
        self._scripts = {read: redis.register_script(text) for read, text in SCRIPTS.items()}
        self._hold = redis.register_script(HOLD)

    # -- warm tries: one EVALSHA each ------------------------------------------------
    def comments(self, token_key: str, photo_id: int, count: int, after: int | None, base: str) -> Rendered | Miss:
        """GET /media/{id}/comments: oldest first, past `after` (a comment id)."""
        return self._read("comments", token_key, photo_id, count, after, base)

    def likes(self, token_key: str, photo_id: int, count: int, max_like_id: int | None,
              base: str) -> Rendered | Miss:
        """GET /media/{id}/likes: the likers, newest like first, before `max_like_id`."""
        return self._read("likes", token_key, photo_id, count, max_like_id, base)

    def follow_list(self, kind: str, token_key: str, owner_id: int | None, count: int, cursor: int | None,
                    base: str) -> Rendered | Miss:
        """A FOLLOW_LISTS list of `owner_id` (None: the viewer's), newest follow first, before `cursor`."""
        return self._read(kind, token_key, owner_id, count, cursor, base)

    def _read(self, read: str, token_key: str, subject_id: int | None, count: int, cursor: int | None,
              base: str) -> Rendered | Miss:
        if subject_id is not None and not _wide(subject_id):  # never stored
            return Miss("width", 0)
        subject = "" if subject_id is None else str(subject_id)
        args = [subject, count, "" if cursor is None else str(cursor).zfill(ID_WIDTH)]  # compared as strings
        return self.rendered.warm_read(read, self._scripts[read], token_key, args, base)

    # -- the long ways, and what the next read needs -------------------------------------
    def comments_page(self, session: Session, viewer_id: int, miss: Miss, photo: Photo, count: int,
                      after: int | None, base: str) -> tuple[list[dict], int | None]:
        """The page from the database (the viewer may see the photo: the caller checked)."""
        rows, cursor = reactions.comments(session, photo, count, after)
        users = self.media.user_summaries(session, [c.user_id for c in rows])
        serializer = self.media.serializer
        page = [serializer.comment_json(c, users[c.user_id]) for c in rows if c.user_id in users]
        if self._worth_warming(miss) and photo.status == "ready":
            self._warm_comments(session, viewer_id, miss, photo, base)
        return page, cursor

    def likes_page(self, session: Session, viewer_id: int, miss: Miss, photo: Photo, count: int,
                   max_like_id: int | None, base: str) -> tuple[list[dict], int | None]:
        user_ids, cursor = reactions.likers(session, photo, count, max_like_id)
        users = self.media.user_summaries(session, user_ids)
        page = [self.media.serializer.user_summary(users[i]) for i in user_ids if i in users]
        if self._worth_warming(miss) and photo.status == "ready":
            self._warm_likes(session, viewer_id, miss, photo, base)
        return page, cursor

    def follow_page(self, session: Session, viewer_id: int, miss: Miss, kind: str, owner_id: int, count: int,
                    cursor: int | None, base: str) -> tuple[list[dict], int | None]:
        """A FOLLOW_LISTS list's page from the database (the viewer may see it: the caller checked)."""
        mine, theirs, status, _ = FOLLOW_LISTS[kind]
        query = (select(User, Follow.id).join(Follow, theirs == User.id)
                 .where(mine == owner_id, Follow.status == status).order_by(Follow.id.desc()).limit(count + 1))
        if cursor is not None:
            query = query.where(Follow.id < cursor)
        rows, next_cursor = split_page(session.execute(query).all(), count, lambda row: row[1])
        self.warm_follow_list(session, viewer_id, miss, kind, owner_id, base)
        return [self.media.serializer.user_summary(user) for user, _ in rows], next_cursor

    def warm_follow_list(self, session: Session, viewer_id: int, miss: Miss, kind: str, owner_id: int,
                         base: str) -> None:
        """What the next read of a FOLLOW_LISTS list needs, after `miss`."""
        if not self._worth_warming(miss):
            return
        mine, theirs, status, prefix = FOLLOW_LISTS[kind]
        rows = session.execute(select(Follow.id, theirs).where(mine == owner_id, Follow.status == status)
                               .order_by(Follow.id.desc()).limit(LIST_LIMIT + 1)).all()
        stored = self._user_records(session, rows)
        if stored is not None:
            value, users = stored
            self._store(session, viewer_id, miss, FeedPage([], {}, None), users, base,
                        {f"{prefix}{owner_id}": (value, LIST_TTL)}, owner_id)

    @staticmethod
    def _worth_warming(miss: Miss) -> bool:
        # 'deep': the list is stored, the page is past its end; no `since`: nothing to store against.
        return bool(miss.since) and miss.why != "deep"

    def _warm_comments(self, session: Session, viewer_id: int, miss: Miss, photo: Photo, base: str) -> None:
        rows = session.scalars(select(Comment).where(Comment.photo_id == photo.id)
                               .order_by(Comment.id).limit(LIST_LIMIT + 1)).all()
        head, rows = _head(rows)
        users = self.media.user_summaries(session, {c.user_id for c in rows})
        if not all(c.user_id in users and _wide(c.id, c.user_id) for c in rows):
            return  # the scripts could not read it, or the long way leaves a comment out
        fragments, records = {}, []
        for comment in rows:
            text = render_comment(self.media, comment)
            digest = fragment_hash(text)
            fragments[digest] = text
            records.append(f"{comment.id}{comment.user_id}{digest}")
        page = self._photo_page(session, photo)
        if page is None:
            return
        try:  # fragments first and unconditionally, as the feed's (named by their content)
            pipe = self.redis.pipeline(transaction=False)
            for digest, text in fragments.items():
                pipe.set(fragment_key(digest), text, ex=LIST_TTL + HELD_TTL)
            pipe.execute()
        except RedisError:
            log.warning("comments of photo %s: fragments not stored", photo.id, exc_info=True)
            return
        self._store(session, viewer_id, miss, page, users, base,
                    {comments_list_key(photo.id): (head + "".join(records), LIST_TTL)}, photo.user_id)

    def _warm_likes(self, session: Session, viewer_id: int, miss: Miss, photo: Photo, base: str) -> None:
        rows = session.execute(select(Like.id, Like.user_id).where(Like.photo_id == photo.id)
                               .order_by(Like.id.desc()).limit(LIST_LIMIT + 1)).all()
        stored = self._user_records(session, rows)
        page = self._photo_page(session, photo)
        if stored is not None and page is not None:
            value, users = stored
            self._store(session, viewer_id, miss, page, users, base,
                        {likes_list_key(photo.id): (value, LIST_TTL)}, photo.user_id)

    def _user_records(self, session: Session, rows) -> tuple[str, dict[int, UserSummary]] | None:
        """(id, user id) rows as a stored list, and the summaries of its users; None
        when the script could not read it (or a user is gone: the long way leaves them out)."""
        head, rows = _head(rows)
        users = self.media.user_summaries(session, {user_id for _, user_id in rows})
        if not all(user_id in users and _wide(row_id, user_id) for row_id, user_id in rows):
            return None
        return head + "".join(f"{row_id}{user_id}" for row_id, user_id in rows), users

    def _photo_page(self, session: Session, photo: Photo) -> FeedPage | None:
        """The photo's media entry: a photo's list is read after its mi: entry (visible_photo)."""
        entries = self.media.entries(session, [photo.id], {photo.id: photo})
        return FeedPage([photo.id], entries, None) if photo.id in entries else None

    def _store(self, session: Session, viewer_id: int, miss: Miss, page: FeedPage, users: dict[int, UserSummary],
               base: str, lists: dict[str, tuple[str, int]], owner_id: int) -> None:
        """The lists, guarded as the feed's entries, with the users they show and
        what may_see needs of the viewer and `owner_id`."""
        if page.photo_ids:
            users = {**self.media.page_users(session, page.entries, page.photo_ids), **users}
        self.rendered.warm(session, viewer_id, miss, page, users, base, lists)
        try:
            self.graph.warm(session, viewer_id, [owner_id], miss.since)
        except RedisError:
            log.warning("warm list of user %s: the social graph not stored", viewer_id, exc_info=True)

    # -- after a commit ----------------------------------------------------------------
    def forget_follow_lists(self, user_ids) -> None:
        """Follows or requests of these users changed: their lists either way go."""
        keys_ = [key for user_id in dict.fromkeys(user_ids) for key in follow_list_keys(user_id)]
        if keys_:
            self._hold(keys=keys_, args=[HELD_TTL])
