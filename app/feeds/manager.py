"""Home feeds: fan-out on write into Redis, rebuilt from the database on read.

Mastodon's FeedManager is the model. Two kinds of sorted sets:

  feed:{user}   photo ids of the user's own photos and of the accounts they
                actively follow, capped at settings.feed_size.
  posts:{user}  a celebrity's own recent photos (same cap). Celebrities
                (followed_by_count > settings.celebrity_threshold) are not
                fanned out; their followers' reads merge these sets instead.
                Redis rather than one database query per read: the merge is
                then the same range query as the feed, in the same round trip,
                costing O(log n + count) per celebrity however many photos
                they have, and the hottest read stays off the photos table.

Ids and scores. Photo ids are 63-bit integers but zset scores are doubles
(53-bit mantissa), so float(id) rounds: neighbouring ids (up to ~512 apart
today) can share a score. Members are str(id) and every id is 19 decimal
digits (ids passed 10**18 in 2014 and stay below 2**63), so lexicographic
order of members is numeric order; rounding is monotonic and Redis orders
equal scores by member, so ZREVRANGE order is exactly numeric order. Score
bounds for cursors are therefore inclusive and fuzzy: `_range` fetches by
score, then drops the tie members beyond the cursor on the client, fetching
more when ties ate into the page.

Built or not. A set built from the database holds the sentinel member "0"
(score 0, always rank 0; the trims start at rank 1 to keep it). A missing
set (flushed, evicted, new server) or one that fan-out created by writing
into a missing key has no sentinel and is (re)built on the next read; an
empty feed keeps its sentinel, so it is not rebuilt on every request.
Building is one ZADD of the database's ids into the key: atomic, merging
with anything fan-out wrote meanwhile (a RENAME would drop those), and two
racing builds write the same members, so no lock is needed.

Inactive users. Fan-out skips followers whose users.last_active_at is older
than FEED_INACTIVE_DAYS, and feed:{user} carries a TTL of that length, set
when it is built or written and when the user is seen (app/accounts/presence.py): the
feed of a user who stays away expires at most twice that after their last
visit, instead of growing, as Mastodon's do. A returning user's feed is deleted before their
first request (it missed what fan-out skipped) and rebuilt on read.

What the sets hold is a superset of what may be shown: reads hydrate the
page through the cache and keep only ready photos of the viewer and of the
accounts they actively follow (one small query on the page's owners), so a stale id (a fan-out racing an unfollow,
a delete racing a fan-out) costs a slot, never a leak.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from redis.exceptions import ResponseError
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.media.reader import MediaReader
from app.platform import metrics, outbox
from app.platform.aftercommit import after_commit
from app.platform.clocks import STAMP_LUA, Clocks
from app.platform.keys import FEED, celebrities_key, feed_key, following_key, follows_clock_key, posts_key
from app.social import relationships as social
from models import Block, Database, Follow, Photo, User, utcnow

CHUNK = Settings.fanout_chunk  # FANOUT_CHUNK's default: followers per fan-out task and Redis round trip
# The chunked feed tasks (tasks/feeds.py): each promises its next chunk through the outbox.
FAN_OUT_TASK = "tasks.feeds.fan_out"
REMOVE_PHOTO_TASK = "tasks.feeds.remove_photo"
CROSSED_TASK = "tasks.feeds.celebrity_crossed"
BACKFILL_BATCH = 100  # followers per pipeline when a whole recent history is written
BUILT = "0"  # the sentinel member of a set built from the database
CELEBRITIES_TTL = 60  # seconds a viewer's list of followed celebrities is reused
FOLLOWING_TTL = 300  # seconds a viewer's set of followees is reused (follow changes drop it)
SLACK = 10  # candidates fetched beyond `count`, for ids that hydration drops
FOLLOW_STARTED = "tasks.feeds.follow_started"  # the outbox kinds of apply_change
FOLLOW_ENDED = "tasks.feeds.follow_ended"

_FEED_PREFIX = FEED.encode()


@dataclass
class FeedPage:
    photo_ids: list[int]  # newest first, all visible to the viewer
    entries: dict[int, dict]  # MediaReader.entries of those photos
    next_max_id: int | None
    gone: list[int] = field(default_factory=list)  # ids looked at whose photo no longer exists


# After a committed follow change of user KEYS[3]: drop what is derived from
# their follows (celebs, following) and stamp their follows clock (app/platform/clocks.py).
FOLLOWS_CHANGED = STAMP_LUA + """
redis.call('DEL', KEYS[1], KEYS[2])
stamp(KEYS[3])
"""

# After an account crossed the celebrity threshold: drop follower KEYS[1]'s
# celebs list and stamp their follows clock (KEYS[2]), so no rebuild that
# raced the crossing stores the old list.
CELEBRITIES_CHANGED = STAMP_LUA + """
redis.call('DEL', KEYS[1])
stamp(KEYS[2])
"""


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class FeedManager:
    def __init__(self, redis, db: Database, settings: Settings, media: MediaReader, celery=None) -> None:
        self.redis = redis
        self.db = db
        self.media = media  # the entries of the photos a page shows
        self.settings = settings
        self.celery = celery  # publishes the outbox rows this manager promises
        self.clocks = Clocks(redis)
        self._follows_changed = redis.register_script(FOLLOWS_CHANGED)
        self._celebrities_changed = redis.register_script(CELEBRITIES_CHANGED)

    @property
    def _trim_stop(self) -> int:
        # ZREMRANGEBYRANK key 1 stop: keep rank 0 (the sentinel) and the newest feed_size.
        return -(self.settings.feed_size + 1)

    @property
    def feed_ttl(self) -> int:
        """Seconds a feed outlives its owner's last activity (FEED_INACTIVE_DAYS)."""
        return self.settings.feed_inactive_days * 86400

    def active_since(self, now: datetime | None = None) -> datetime:
        """Users last active before this are inactive: fan-out skips them."""
        return (now or utcnow()) - timedelta(days=self.settings.feed_inactive_days)

    def is_celebrity(self, followed_by_count: int) -> bool:
        return followed_by_count > self.settings.celebrity_threshold

    # -- writing ------------------------------------------------------------
    def add_own(self, photo_id: int, author_id: int, *, celebrity: bool = False) -> None:
        """The author's own feed (and a celebrity's posts set) get a photo that became ready."""
        pipe = self.redis.pipeline(transaction=False)
        keys = [feed_key(author_id)] + ([posts_key(author_id)] if celebrity else [])
        for key in keys:
            pipe.zadd(key, {str(photo_id): float(photo_id)})
            pipe.zremrangebyrank(key, 1, self._trim_stop)
        pipe.expire(feed_key(author_id), self.feed_ttl)  # a feed this made must expire too
        pipe.execute()

    def deliver(self, photo_id: int, follower_ids: list[int]) -> None:
        """ZADD + trim + EXPIRE into each follower's feed, in one round trip
        (a feed this creates must expire too; EXPIRE's NX needs Redis 7).

        The protocol is packed here rather than by redis-py's pipeline, whose
        per-command bookkeeping costs about three times what Redis spends
        executing ZADD and ZREMRANGEBYRANK; the replies are still read by the
        connection's own (hiredis) parser.
        """
        if not follower_ids:
            return
        started = time.perf_counter()
        zadd_tail = _bulk(repr(float(photo_id)).encode()) + _bulk(str(photo_id).encode())
        trim_tail = _bulk(b"1") + _bulk(str(self._trim_stop).encode())
        expire_tail = _bulk(str(self.feed_ttl).encode())
        parts = []
        for follower_id in follower_ids:
            key = _bulk(b"%s%d" % (_FEED_PREFIX, follower_id))  # feed_key, as bytes
            parts.append(b"*4\r\n$4\r\nZADD\r\n" + key + zadd_tail)
            parts.append(b"*4\r\n$15\r\nZREMRANGEBYRANK\r\n" + key + trim_tail)
            parts.append(b"*3\r\n$6\r\nEXPIRE\r\n" + key + expire_tail)
        pool = self.redis.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command([b"".join(parts)])
            error = None
            for _ in range(len(parts)):
                try:
                    connection.read_response()
                except ResponseError as reply:  # e.g. WRONGTYPE: read the rest, then raise
                    error = error or reply
            if error is not None:
                raise error
        except BaseException:
            connection.disconnect()  # never hand back a connection with replies unread
            raise
        finally:
            pool.release(connection)
        metrics.FANOUT_SECONDS.observe(time.perf_counter() - started)
        metrics.FANOUT_DELIVERIES.inc(len(follower_ids))

    def _follower_page(self, session: Session, followee_id: int, after: int, chunk: int, *, active_only: bool):
        """(follow id, follower id) of one chunk of active follows, by follow id; with
        active_only, of followers seen within FEED_INACTIVE_DAYS (fan-out skips the others)."""
        query = (select(Follow.id, Follow.follower_id)
                 .where(Follow.followee_id == followee_id, Follow.status == "active", Follow.id > after)
                 .order_by(Follow.id).limit(chunk))
        if active_only:
            query = query.join(User, User.id == Follow.follower_id).where(User.last_active_at >= self.active_since())
        return session.execute(query).all()

    def fan_out(self, photo_id: int, after: int = 0, chunk: int | None = None) -> int | None:
        """Deliver a ready photo to one chunk of its author's active followers,
        skipping users away for FEED_INACTIVE_DAYS (their feeds expire instead,
        and are rebuilt when they return).

        Followers are paged by follow id, which the index (followee_id, status,
        id) serves without sorting; returns the cursor of the next chunk, or
        None when done. Idempotent: ZADD of a member already there changes nothing.
        """
        chunk = chunk or self.settings.fanout_chunk
        with self.db.session(read_only=True) as session:
            row = session.execute(
                select(Photo.user_id, Photo.status, User.followed_by_count)
                .join(User, User.id == Photo.user_id).where(Photo.id == photo_id)
            ).first()
            if row is None or row.status != "ready":
                return None  # deleted meanwhile, or not ready (a stray delivery)
            celebrity = self.is_celebrity(row.followed_by_count)
            if after == 0:
                # Again here (publish_photo did it already) in case that call failed.
                self.add_own(photo_id, row.user_id, celebrity=celebrity)
            if celebrity:
                return None  # read-time merge from posts:{author} instead
            follows = self._follower_page(session, row.user_id, after, chunk, active_only=True)
        self.deliver(photo_id, [f.follower_id for f in follows])
        return follows[-1].id if len(follows) == chunk else None

    def fan_out_all(self, photo_id: int, chunk: int | None = None) -> None:
        """Every chunk in this process (tests, benchmarks, a shell); workers chain tasks."""
        after = self.fan_out(photo_id, 0, chunk)
        while after is not None:
            after = self.fan_out(photo_id, after, chunk)

    def remove_photo(self, photo_id: int, author_id: int, after: int = 0, chunk: int | None = None) -> int | None:
        """Take a deleted photo out of one chunk of feeds; the next cursor or None."""
        chunk = chunk or self.settings.fanout_chunk
        member = str(photo_id)
        if after == 0:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zrem(feed_key(author_id), member)
            pipe.zrem(posts_key(author_id), member)
            pipe.execute()
        with self.db.session(read_only=True) as session:
            followed_by = session.scalar(select(User.followed_by_count).where(User.id == author_id))
            # A celebrity's followers never got it by fan-out (mirrors fan_out);
            # anything older that did is dropped by the reads' hydration.
            if followed_by is None or self.is_celebrity(followed_by):
                return None
            # Inactive followers too: their feed may not have expired yet.
            follows = self._follower_page(session, author_id, after, chunk, active_only=False)
        if follows:
            pipe = self.redis.pipeline(transaction=False)
            for follow in follows:
                pipe.zrem(feed_key(follow.follower_id), member)
            pipe.execute()
        return follows[-1].id if len(follows) == chunk else None

    def remove_photo_all(self, photo_id: int, author_id: int, chunk: int | None = None) -> None:
        after = self.remove_photo(photo_id, author_id, 0, chunk)
        while after is not None:
            after = self.remove_photo(photo_id, author_id, after, chunk)

    # -- the feed tasks' steps: one chunk, then the next one promised ------------
    # The promise is committed before the task is acknowledged, so any
    # interruption resumes where it stopped: a task killed before the commit
    # is redelivered and redoes its chunk (ZADD and ZREM are idempotent), and
    # a broker that refuses the publish leaves the row to the sweeper.
    def fan_out_step(self, photo_id: int, after: int = 0) -> None:
        following = self.fan_out(photo_id, after)
        if following is not None:
            self._promise(FAN_OUT_TASK, photo_id=photo_id, after=following)

    def remove_photo_step(self, photo_id: int, user_id: int, after: int = 0) -> None:
        following = self.remove_photo(photo_id, user_id, after)
        if following is not None:
            self._promise(REMOVE_PHOTO_TASK, photo_id=photo_id, user_id=user_id, after=following)

    def celebrity_crossed_step(self, user_id: int, after: int = 0) -> None:
        following = self.celebrity_crossed(user_id, after)
        if following is not None:
            self._promise(CROSSED_TASK, user_id=user_id, after=following)

    def _promise(self, task_name: str, **kwargs) -> None:
        outbox.promise(self.db, self.celery, task_name, **kwargs)

    # -- crossing the celebrity threshold ------------------------------------------
    def promise_crossings(self, session: Session) -> None:
        """Before the commit of a follow change: an account whose follower count
        crossed the celebrity threshold (either way, app.social.relationships records the
        counts) gets its followers' catch-up promised in the same commit,
        published after it (app/platform/aftercommit.py; the sweeper if the broker is down)."""
        threshold = self.settings.celebrity_threshold
        unit = after_commit(session)
        crossed = sorted({user_id for user_id, count, delta in unit.state.pop(social.FOLLOWED_BY_CHANGED, [])
                          if count == (threshold + 1 if delta > 0 else threshold)})
        for user_id in crossed:
            unit.must_happen(session, outbox.task(CROSSED_TASK, user_id=user_id), celery=self.celery)

    def celebrity_crossed(self, user_id: int, after: int = 0, chunk: int | None = None) -> int | None:
        """One chunk of the followers of an account that crossed the threshold.

        Below it now: its recent photos, never fanned out while it was above,
        join their feeds (they are no longer merged at read time). Either way
        their celebs lists go, so the merge follows the new status at once,
        not within CELEBRITIES_TTL. Decided by the count when it runs, so a
        late or repeated run does the right thing. The next cursor or None.
        """
        chunk = chunk or self.settings.fanout_chunk
        with self.db.session(read_only=True) as session:
            followed_by = session.scalar(select(User.followed_by_count).where(User.id == user_id))
            if followed_by is None:
                return None
            follows = self._follower_page(session, user_id, after, chunk, active_only=True)
            photo_ids = [] if self.is_celebrity(followed_by) else session.scalars(
                select(Photo.id).where(Photo.user_id == user_id, Photo.status == "ready")
                .order_by(Photo.id.desc()).limit(self.settings.feed_size)
            ).all()
        self._catch_up([f.follower_id for f in follows], photo_ids)
        return follows[-1].id if len(follows) == chunk else None

    def _catch_up(self, follower_ids: list[int], photo_ids: list[int]) -> None:
        """The photos into each follower's feed, then their celebs list dropped."""
        members = {str(i): float(i) for i in photo_ids}
        for start in range(0, len(follower_ids), BACKFILL_BATCH):
            pipe = self.redis.pipeline(transaction=False)
            for follower_id in follower_ids[start:start + BACKFILL_BATCH]:
                if members:  # photos first: the old celebs list still merges them meanwhile
                    pipe.zadd(feed_key(follower_id), members)
                    pipe.zremrangebyrank(feed_key(follower_id), 1, self._trim_stop)
                    pipe.expire(feed_key(follower_id), self.feed_ttl)  # as deliver(): it may create the key
                self._celebrities_changed(keys=[celebrities_key(follower_id), follows_clock_key(follower_id)],
                                          client=pipe)
            pipe.execute()

    def merge_followee(self, session: Session, follower_id: int, followee_id: int) -> None:
        """A follow became active: the followee's recent photos join the follower's feed."""
        key = feed_key(follower_id)
        if self.redis.zscore(key, BUILT) is None:
            return  # not built: the next read builds it, this follow included
        ids = session.scalars(
            select(Photo.id).where(Photo.user_id == followee_id, Photo.status == "ready")
            .order_by(Photo.id.desc()).limit(self.settings.feed_size)
        ).all()
        if ids:
            pipe = self.redis.pipeline(transaction=False)
            pipe.zadd(key, {str(i): float(i) for i in ids})
            pipe.zremrangebyrank(key, 1, self._trim_stop)
            pipe.execute()

    def remove_followee(self, session: Session, follower_id: int, followee_id: int) -> None:
        """A follow ended (unfollow, block): the followee's photos leave the follower's feed."""
        key = feed_key(follower_id)
        members = [int(m) for m in self.redis.zrange(key, 0, -1) if m != BUILT]
        if not members:
            return
        theirs = session.scalars(
            select(Photo.id).where(Photo.id.in_(members), Photo.user_id == followee_id)
        ).all()
        if theirs:
            self.redis.zrem(key, *(str(i) for i in theirs))

    def apply_change(self, session: Session, change) -> None:
        """Promise, in the caller's transaction, the feed follow-up of a
        relationship change (app.social.relationships.Change).

        Each follow that started or ended is an outbox row (app/platform/aftercommit.py):
        done at once after the commit, or by its task if Redis fails then. Both
        must happen: a block or unfollow missed here would leave the followee's
        photos (private ones too) in the feed and in `following:{viewer}` for
        FOLLOWING_TTL, and a follow's merge, missed, would never be repaired
        (a built feed is not rebuilt) while the viewer's followees stay stale.

        An account whose follower count crossed the celebrity threshold is
        caught up the same way (promise_crossings).
        """
        self.promise_crossings(session)
        unit = after_commit(session)
        for task, pairs, now in ((FOLLOW_STARTED, [change.follow_started] if change.follow_started else [],
                                  self.follow_started),
                                 (FOLLOW_ENDED, change.follows_ended or [], self.follow_ended)):
            for follower_id, followee_id in pairs:
                row = outbox.add(session, task, follower_id=follower_id, followee_id=followee_id)
                unit.must_happen(session, row, now=partial(now, follower_id, followee_id))

    def follow_started(self, follower_id: int, followee_id: int) -> None:
        """After a committed follow (tasks.feeds.follow_started; idempotent): the
        follower's derived sets go, and the followee's photos join their feed
        unless the follow has ended since."""
        self.follows_changed(follower_id)
        with self.db.session(read_only=True) as session:
            if self._follows(session, follower_id, followee_id):
                self.merge_followee(session, follower_id, followee_id)

    def follow_ended(self, follower_id: int, followee_id: int) -> None:
        """After a committed unfollow or block (tasks.feeds.follow_ended;
        idempotent): the follower's derived sets go, and the followee's photos
        leave their feed unless they follow again since."""
        self.follows_changed(follower_id)
        with self.db.session(read_only=True) as session:
            if not self._follows(session, follower_id, followee_id):
                self.remove_followee(session, follower_id, followee_id)

    @staticmethod
    def _follows(session: Session, follower_id: int, followee_id: int) -> bool:
        return session.scalar(select(Follow.id).where(
            Follow.follower_id == follower_id, Follow.followee_id == followee_id, Follow.status == "active"
        )) is not None

    def owner_seen(self, user_id: int, returning: bool) -> None:
        """The user is active again (app/accounts/presence.py): their feed lives another
        FEED_INACTIVE_DAYS; if they were away, it goes (fan-out skipped them), to
        be rebuilt on their next read."""
        if returning:
            self.redis.delete(feed_key(user_id))
        else:
            self.redis.expire(feed_key(user_id), self.feed_ttl)

    def follows_changed(self, user_id: int) -> None:
        """The user's follows changed (committed): what is derived from them goes."""
        self._follows_changed(keys=[celebrities_key(user_id), following_key(user_id), follows_clock_key(user_id)])

    # -- building -----------------------------------------------------------
    def _store_built(self, key: str, ids: list[int], ttl: int | None = None) -> None:
        members = {BUILT: 0.0, **{str(i): float(i) for i in ids}}
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(key, members)
        pipe.zremrangebyrank(key, 1, self._trim_stop)
        if ttl:
            pipe.expire(key, ttl)
        pipe.execute()

    def build_feed(self, session: Session, user_id: int) -> None:
        """feed:{user} from the database: own and active followees' ready photos."""
        followees = select(Follow.followee_id).where(Follow.follower_id == user_id, Follow.status == "active")
        blocked = select(Block.blocked_id).where(Block.blocker_id == user_id).union(
            select(Block.blocker_id).where(Block.blocked_id == user_id))
        ids = session.scalars(
            select(Photo.id)
            .where(Photo.status == "ready",
                   or_(Photo.user_id == user_id,
                       and_(Photo.user_id.in_(followees), Photo.user_id.not_in(blocked))))
            .order_by(Photo.id.desc()).limit(self.settings.feed_size)
        ).all()
        self._store_built(feed_key(user_id), list(ids), ttl=self.feed_ttl)

    def rebuild(self, session: Session, user_id: int) -> None:
        """An operator's rebuild (`shutter rebuild-feeds`): the home feed and own posts replaced
        from the database, entries that should not be there dropped."""
        self.redis.delete(feed_key(user_id), posts_key(user_id))
        self.build_feed(session, user_id)
        self.build_posts(session, user_id)

    def build_posts(self, session: Session, user_id: int) -> None:
        ids = session.scalars(
            select(Photo.id).where(Photo.user_id == user_id, Photo.status == "ready")
            .order_by(Photo.id.desc()).limit(self.settings.feed_size)
        ).all()
        self._store_built(posts_key(user_id), list(ids))

    # -- reading ------------------------------------------------------------
    def _range(self, keys: list[str], want: int, max_id: int | None, min_id: int | None
               ) -> tuple[list[list[int]], list[bool], list[bool]]:
        """For each key: up to `want` ids in (min_id, max_id), newest first; whether
        more may follow; whether the key was built. One round trip when warm."""
        high = float(max_id) if max_id is not None else "+inf"  # inclusive: ties are filtered below
        low = float(min_id) if min_id is not None else "(0"  # never the sentinel
        results: list[list[int]] = [[] for _ in keys]
        more = [False] * len(keys)
        built = [True] * len(keys)
        todo = list(range(len(keys)))
        fetch = want + 4
        first = True
        while todo:
            pipe = self.redis.pipeline(transaction=False)
            for i in todo:
                if first:
                    pipe.zscore(keys[i], BUILT)
                pipe.zrevrangebyscore(keys[i], high, low, start=0, num=fetch)
            replies = pipe.execute()
            if first:
                built = [replies[2 * n] is not None for n in range(len(keys))]
                replies = replies[1::2]
            again = []
            for i, raw in zip(todo, replies):
                ids = [int(m) for m in raw]
                ids = [x for x in ids if (max_id is None or x < max_id) and (min_id is None or x > min_id)]
                full = len(raw) == fetch
                if full and len(ids) < want:
                    again.append(i)  # ties at the max_id end took places: fetch more
                results[i], more[i] = ids[:want], full or len(ids) > want
            todo, fetch, first = again, fetch * 4, False
        return results, more, built

    def followed_celebrities(self, session: Session, viewer_id: int) -> list[int]:
        """The accounts above the celebrity threshold that the viewer follows.

        Kept in Redis for CELEBRITIES_TTL (a query per feed read otherwise);
        the viewer's follow changes drop it (and refuse a rebuild that raced
        them: FOLLOWS_CHANGED), and so does an account crossing the threshold
        (celebrity_crossed).
        """
        key = celebrities_key(viewer_id)
        cached = self.redis.get(key)
        if cached is not None:
            return [int(i) for i in cached.split(",") if i]
        since = self.clocks.now()
        ids = session.scalars(
            select(Follow.followee_id).join(User, User.id == Follow.followee_id)
            .where(Follow.follower_id == viewer_id, Follow.status == "active",
                   User.followed_by_count > self.settings.celebrity_threshold)
        ).all()
        self.clocks.store_string(follows_clock_key(viewer_id), key, since, ",".join(map(str, ids)), CELEBRITIES_TTL)
        return list(ids)

    def followed_among(self, session: Session, viewer_id: int, user_ids: set[int]) -> set[int]:
        """Those of `user_ids` the viewer actively follows.

        The viewer's followees are kept in a Redis set for FOLLOWING_TTL (built
        from the database on a miss, with the BUILT sentinel so that following
        nobody is remembered too); the viewer's follow changes drop it, as
        for followed_celebrities.
        """
        if not user_ids:
            return set()
        key = following_key(viewer_id)
        candidates = sorted(user_ids)
        pipe = self.redis.pipeline(transaction=False)
        pipe.exists(key)
        pipe.smismember(key, [str(i) for i in candidates])
        exists, members = pipe.execute()
        if not exists:
            return user_ids & set(self.build_following(session, viewer_id))
        return {i for i, member in zip(candidates, members) if member}

    def build_following(self, session: Session, viewer_id: int, since: int | None = None) -> list[int]:
        """following:{viewer} from the database; the followees' ids. Not stored
        if the viewer's follows changed after `since` (Redis µs, default now:
        it must come before the query)."""
        since = self.clocks.now() if since is None else since
        followees = session.scalars(
            select(Follow.followee_id).where(Follow.follower_id == viewer_id, Follow.status == "active")
        ).all()
        self.clocks.store_set(follows_clock_key(viewer_id), following_key(viewer_id), since,
                              [BUILT, *map(str, followees)], FOLLOWING_TTL)
        return list(followees)

    def page(self, session: Session, viewer_id: int, count: int,
             max_id: int | None = None, min_id: int | None = None) -> "FeedPage":
        """One page of the home feed, newest first."""
        celebrities = self.followed_celebrities(session, viewer_id)
        keys = [feed_key(viewer_id)] + [posts_key(c) for c in celebrities]
        want = count + SLACK
        results, more, built = self._range(keys, want, max_id, min_id)
        if not all(built):
            build = [self.build_feed] + [self.build_posts] * len(celebrities)
            for key_built, builder, user_id in zip(built, build, [viewer_id, *celebrities]):
                if not key_built:
                    builder(session, user_id)
            results, more, _ = self._range(keys, want, max_id, min_id)

        candidates = sorted({i for ids in results for i in ids}, reverse=True)
        has_more = any(more) or len(candidates) > want
        candidates = candidates[:want]
        if not candidates:
            return FeedPage([], {}, None)
        # Hydration through the cache, then the visibility check on the page's
        # owners (one Redis round trip): ready photos of the viewer and of accounts
        # the viewer actively follows (private accounts' photos reach approved
        # followers only; a block ends follows). The slack is hydrated only when
        # ids were dropped: usually one round of `count` photos.
        ids: list[int] = []
        entries: dict[int, dict] = {}
        gone: list[int] = []
        looked = 0
        while len(ids) < count and looked < len(candidates):
            batch = candidates[looked:looked + count - len(ids)]
            looked += len(batch)
            found = self.media.entries(session, batch)
            gone += [i for i in batch if i not in found]
            loaded = {i: e for i, e in found.items() if e["body"]["status"] == "ready"}
            owners = {e["user_id"] for e in loaded.values()} - {viewer_id}
            followed = self.followed_among(session, viewer_id, owners)
            shown = [i for i in batch if i in loaded and loaded[i]["user_id"] in followed | {viewer_id}]
            ids += shown
            entries.update((i, loaded[i]) for i in shown)
        more = has_more or looked < len(candidates)
        # Continue below the last candidate looked at (the last photo, unless ids were dropped).
        return FeedPage(ids, entries, candidates[looked - 1] if more else None, gone)
