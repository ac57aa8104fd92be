"""The activity feed: likes, comments, follows, follow requests and mentions, and notices
about the user's own account (a linked Twitter or Facebook account that was revoked).

The `activities` table is the truth: rows are inserted and deleted in the
same transaction as the like, comment or follow they describe. Redis holds
a capped copy of each user's newest activity ids, `activity:{user}`, a sorted
set whose members are zero-padded ids with score 0, so that lexicographic
order is id order (64-bit ids do not fit a float score exactly).

The member SENTINEL ("0", lower than every padded id) marks a copy that is
complete up to the cap. Writes add to whatever is there; a reader that finds
no sentinel (new server, eviction, FLUSHDB) rebuilds from the database by
merging, so a write racing the rebuild is never lost. An id whose row is
gone is dropped when a reader meets it.

Writers record rows with `record`/`remove` and commit: the transaction's
after-commit unit (app/platform/aftercommit.py) then mirrors what it did into Redis.
If Redis fails right then, the mirror is handed to a task
(tasks.feeds.publish_activity, through the outbox) that retries until Redis
answers: a copy that holds its sentinel is never rebuilt, so a missed id
would otherwise stay missing. A removal that never reached Redis needs no
such care: readers drop an id whose row is gone.

When push is on (APNS_* set: the container's `push.enabled`), the same unit
then publishes one push task for the transaction's new activity and accepted
follow requests (app/push does the rest); a broker that fails right then hands
it to the outbox. Reading the first page of one's activity marks it seen: the
push badge counts the activity since (`unseen_count`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from app.platform import text
from app.platform.aftercommit import after_commit
from app.platform.keys import activity_key, activity_seen_key
from app.social import visibility
from models import Activity, Block, User

CAP = 100
TTL_SECONDS = 30 * 24 * 3600  # an inactive user's copy goes; the rows stay
SENTINEL = "0"
PUBLISH_TASK = "tasks.feeds.publish_activity"
PUSH_TASK = "tasks.push.notify"
TYPES = ("like", "comment", "follow", "follow_request", "mention", "linked_account_revoked")
# Notices about the user's own account: the user is their own actor (not pushed).
NOTICE_TYPES = ("linked_account_revoked",)


def _member(activity_id: int) -> str:
    return f"{activity_id:020d}"


@dataclass
class _Pending:
    added: list[tuple[int, int]] = field(default_factory=list)  # (recipient, activity id)
    removed: list[tuple[int, int]] = field(default_factory=list)
    pushed: list[int] = field(default_factory=list)  # activity ids to push
    accepted: list[tuple[int, int]] = field(default_factory=list)  # (follower, followee): "bob accepted …"


def _push_on(unit) -> bool:
    return unit.services is not None and unit.services.push.enabled


def publish_push(celery, activity_ids: list[int], accepted: list) -> None:
    if activity_ids or accepted:
        celery.send_task(PUSH_TASK, kwargs={"activity_ids": activity_ids, "accepted": accepted})


def _pending(session: Session) -> _Pending:
    """This transaction's changes, mirrored into Redis once it commits."""
    unit = after_commit(session)
    pending = unit.state.get("activity")
    if pending is None:
        pending = unit.state["activity"] = _Pending()
        # A copy that holds its sentinel is never rebuilt, so an id missed here
        # would stay missing: the task mirrors it once Redis answers.
        unit.best_effort("activity.publish", lambda **changes: publish(unit.services.redis, **changes),
                         retry_as=PUBLISH_TASK, added=pending.added, removed=pending.removed)
        if _push_on(unit):  # after the mirror: the badge counts what it added
            unit.best_effort("push.notify", lambda **push: publish_push(unit.services.celery, **push),
                             retry_as=PUSH_TASK, activity_ids=pending.pushed, accepted=pending.accepted)
    return pending


def record(session: Session, recipient_id: int, actor_id: int, type_: str,
           photo_id: int | None = None, comment_id: int | None = None, push: bool = True) -> Activity | None:
    """Insert an activity row in the caller's transaction; none for acting on yourself.
    `push`: tell the recipient's devices once it commits (when push is on)."""
    if recipient_id == actor_id:
        return None
    return _insert(session, Activity(user_id=recipient_id, actor_id=actor_id, type=type_, photo_id=photo_id,
                                     comment_id=comment_id), push)


def record_notice(session: Session, user_id: int, type_: str, photo_id: int | None = None,
                  detail: str | None = None) -> Activity:
    """A notice about the user's own account (NOTICE_TYPES), in the caller's transaction."""
    assert type_ in NOTICE_TYPES, type_
    return _insert(session, Activity(user_id=user_id, actor_id=user_id, type=type_, photo_id=photo_id,
                                     detail=detail), push=False)


def _insert(session: Session, row: Activity, push: bool) -> Activity:
    session.add(row)
    session.flush()
    pending = _pending(session)
    pending.added.append((row.user_id, row.id))
    if push:
        pending.pushed.append(row.id)
    return row


def record_mentions(session: Session, actor_id: int, photo, written: str | None,
                    comment_id: int | None = None, skip: set[int] | frozenset = frozenset()) -> None:
    """A `mention` for each existing user named in `written` who may see the photo."""
    names = text.mentions(written)
    if not names:
        return
    owner = session.get(User, photo.user_id)
    for user in session.scalars(select(User).where(User.username_key.in_(names)).order_by(User.id)):
        if user.id not in skip and visibility.can_view_media(session, user.id, owner):
            record(session, user.id, actor_id, "mention", photo.id, comment_id)


def remove(session: Session, *conditions) -> None:
    """Delete the activity rows matching `conditions` in the caller's transaction."""
    rows = session.execute(delete(Activity).where(*conditions).returning(Activity.id, Activity.user_id)).all()
    _pending(session).removed.extend((user_id, activity_id) for activity_id, user_id in rows)


def discard_pending(session: Session) -> None:
    """What was recorded never happened (a rollback does this by itself)."""
    pending = after_commit(session).state.get("activity")
    if pending is not None:
        for changes in (pending.added, pending.removed, pending.pushed, pending.accepted):
            changes.clear()


def publish(redis, added, removed) -> None:
    """Mirror a committed transaction's activity changes, (recipient, activity id) pairs, into Redis."""
    if not (added or removed):
        return
    pipe = redis.pipeline(transaction=False)
    for user_id, activity_id in added:
        pipe.zadd(activity_key(user_id), {_member(activity_id): 0})
        # Rank 0 is the sentinel; keep it and the CAP newest ids.
        pipe.zremrangebyrank(activity_key(user_id), 1, -(CAP + 1))
        pipe.expire(activity_key(user_id), TTL_SECONDS)
    for user_id, activity_id in removed:
        pipe.zrem(activity_key(user_id), _member(activity_id))
    pipe.execute()


def _rebuild(session: Session, redis, user_id: int) -> None:
    ids = session.scalars(
        select(Activity.id).where(Activity.user_id == user_id).order_by(Activity.id.desc()).limit(CAP)
    ).all()
    pipe = redis.pipeline(transaction=True)
    pipe.zadd(activity_key(user_id), {SENTINEL: 0, **{_member(i): 0 for i in ids}})
    pipe.zremrangebyrank(activity_key(user_id), 1, -(CAP + 1))
    pipe.expire(activity_key(user_id), TTL_SECONDS)
    pipe.execute()


def _page_ids(session: Session, redis, user_id: int, count: int, max_id: int | None) -> list[int]:
    """Up to count + 1 activity ids below max_id, newest first."""
    if redis.zscore(activity_key(user_id), SENTINEL) is None:
        _rebuild(session, redis, user_id)
    upper = f"({_member(max_id)}" if max_id is not None else "+"
    members = redis.zrange(activity_key(user_id), upper, f"({SENTINEL}", desc=True, bylex=True, offset=0, num=count + 1)
    if len(members) > count or redis.zcard(activity_key(user_id)) <= CAP:
        return [int(m) for m in members]
    # Past the capped copy: older activity is read from the table.
    query = select(Activity.id).where(Activity.user_id == user_id).order_by(Activity.id.desc()).limit(count + 1)
    if max_id is not None:
        query = query.where(Activity.id < max_id)
    return list(session.scalars(query))


def unseen_count(session: Session, redis, user_id: int) -> int:
    """How much of the user's activity (at most CAP) is newer than what they last read: the push badge."""
    if redis.zscore(activity_key(user_id), SENTINEL) is None:
        _rebuild(session, redis, user_id)
    seen = redis.get(activity_seen_key(user_id))
    return redis.zlexcount(activity_key(user_id), f"({_member(int(seen))}" if seen else f"({SENTINEL}", "+")


def mark_seen(redis, user_id: int) -> None:
    """The user read their newest activity: the badge starts again from zero."""
    newest = redis.zrange(activity_key(user_id), "+", f"({SENTINEL}", desc=True, bylex=True, offset=0, num=1)
    if newest:
        redis.set(activity_seen_key(user_id), int(newest[0]), ex=TTL_SECONDS)


def page(session: Session, redis, user_id: int, count: int, max_id: int | None) -> tuple[list[Activity], int | None]:
    """A page of the user's activity, newest first, and the next max_id (None at the end).

    Activity by or about users blocked either way is left out, and so is
    activity whose media the user cannot see (yet): a caption mention shows
    once the photo is published.
    """
    shown, cursor, _ = page_rows(session, redis, user_id, count, max_id)
    return shown, cursor


def page_rows(session: Session, redis, user_id: int, count: int,
              max_id: int | None) -> tuple[list[Activity], int | None, list[Activity]]:
    """page(), and every row the page looked at, shown or not (what a warm read of it needs)."""
    ids = _page_ids(session, redis, user_id, count, max_id)
    more = len(ids) > count
    ids = ids[:count]
    rows = {a.id: a for a in session.scalars(select(Activity).where(Activity.id.in_(ids)))} if ids else {}
    stale = [i for i in ids if i not in rows]
    if stale:
        redis.zrem(activity_key(user_id), *(_member(i) for i in stale))
    actors = {a.actor_id for a in rows.values()}
    blocked = set()
    if actors:
        for blocker, blocked_id in session.execute(select(Block.blocker_id, Block.blocked_id).where(or_(
            (Block.blocker_id == user_id) & Block.blocked_id.in_(actors),
            (Block.blocked_id == user_id) & Block.blocker_id.in_(actors),
        ))):
            blocked.add(blocked_id if blocker == user_id else blocker)
    photo_ids = {a.photo_id for a in rows.values() if a.photo_id}
    visible = visibility.visible_photo_ids(session, user_id, photo_ids)
    shown = [rows[i] for i in ids if i in rows and rows[i].actor_id not in blocked
             and (rows[i].photo_id is None or rows[i].photo_id in visible)]
    return shown, (ids[-1] if more else None), [rows[i] for i in ids if i in rows]


# -- the social graph ----------------------------------------------------------

def follow_started(session: Session, follower_id: int, followee_id: int, push: bool = True) -> None:
    """An active follow: a `follow` for the followee, replacing the request it may answer."""
    follow_ended(session, follower_id, followee_id)
    record(session, followee_id, follower_id, "follow", push=push)


def request_approved(session: Session, follower_id: int, followee_id: int) -> None:
    """The followee approved the request: their `follow` (not pushed to them: they did it), and
    the follower is told ("bob accepted your follow request.")."""
    follow_started(session, follower_id, followee_id, push=False)
    _pending(session).accepted.append((follower_id, followee_id))


def follow_ended(session: Session, follower_id: int, followee_id: int) -> None:
    """A follow or request that is gone takes its activity with it."""
    remove(session, Activity.user_id == followee_id, Activity.actor_id == follower_id,
           Activity.type.in_(("follow", "follow_request")))


def follow_changed(session: Session, viewer_id: int, target_id: int, change) -> None:
    """The activity of a relationship action (an app.social.relationships.Change), in its transaction."""
    if change.follow_started and change.action == "approve":
        request_approved(session, *change.follow_started)
    elif change.follow_started:
        follow_started(session, *change.follow_started)
    if change.follow_requested:
        follower_id, followee_id = change.follow_requested
        record(session, followee_id, follower_id, "follow_request")
    if change.action in ("unfollow", "block"):
        follow_ended(session, viewer_id, target_id)
    if change.action in ("ignore", "block"):
        follow_ended(session, target_id, viewer_id)
