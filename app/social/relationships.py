"""The social graph: follows (with requests for private accounts) and blocks.

Counts on `users` change in the same transaction as the rows they count, by
`UPDATE … SET n = n ± 1` only when a row really appeared or disappeared, so
they stay exact under concurrent requests.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import InvalidParameters, NotAllowed
from app.platform import metrics
from app.platform.aftercommit import after_commit
from app.platform.changes import follow_lists_changed, profiles_changed, relations_changed
from app.social.visibility import blocked_either_way, follow_status, is_blocked
from models import Block, Follow, User

ACTIONS = ("follow", "unfollow", "block", "unblock", "approve", "ignore")


@dataclass
class Change:
    """What an action did, for the feed and activity services to follow up."""

    action: str
    follow_started: tuple[int, int] | None = None  # (follower, followee) now active
    follow_requested: tuple[int, int] | None = None
    follows_ended: list[tuple[int, int]] | None = None  # active follows removed


# The after-commit unit's state (dropped with a rollback): (user id,
# followed_by_count after the change, delta) of this transaction's follow
# changes, for app.feeds.manager.promise_crossings.
FOLLOWED_BY_CHANGED = "followed_by_changed"


def _bump_counts(session: Session, follower_id: int, followee_id: int, delta: int) -> None:
    session.execute(
        update(User).where(User.id == follower_id).values(follows_count=User.follows_count + delta),
        execution_options={"synchronize_session": False},
    )
    # RETURNING: the count this transaction made (row-locked), so exactly one
    # transaction sees the count that crosses the celebrity threshold.
    followed_by = session.scalar(
        update(User).where(User.id == followee_id).values(followed_by_count=User.followed_by_count + delta)
        .returning(User.followed_by_count),
        execution_options={"synchronize_session": False},
    )
    after_commit(session).state.setdefault(FOLLOWED_BY_CHANGED, []).append((followee_id, followed_by, delta))
    profiles_changed(session, [follower_id, followee_id])  # their counts


def relationship(session: Session, viewer_id: int, target: User) -> dict:
    outgoing = follow_status(session, viewer_id, target.id)
    incoming = follow_status(session, target.id, viewer_id)
    if is_blocked(session, viewer_id, target.id):
        incoming_status = "blocked_by_you"
    else:
        incoming_status = {"active": "followed_by", "pending": "requested_by"}.get(incoming, "none")
    return {
        "outgoing_status": {"active": "follows", "pending": "requested"}.get(outgoing, "none"),
        "incoming_status": incoming_status,
        "target_user_is_private": target.is_private,
    }


def _remove_follow(session: Session, follower_id: int, followee_id: int) -> str | None:
    """Delete a follow or request; the status it had, or None if there was none."""
    status = session.scalar(
        delete(Follow)
        .where(Follow.follower_id == follower_id, Follow.followee_id == followee_id)
        .returning(Follow.status)
    )
    if status == "active":
        _bump_counts(session, follower_id, followee_id, -1)
    return status


def _activate(session: Session, follower_id: int, followee_id: int) -> bool:
    """Turn a pending request into a follow; False when there was no request."""
    changed = session.execute(
        update(Follow)
        .where(Follow.follower_id == follower_id, Follow.followee_id == followee_id, Follow.status == "pending")
        .values(status="active")
    ).rowcount
    if changed:
        _bump_counts(session, follower_id, followee_id, +1)
        metrics.count_after_commit(session, metrics.FOLLOWS.labels(metrics.FOLLOW_APPROVAL))
    return bool(changed)


def follow(session: Session, viewer: User, target: User) -> Change:
    if blocked_either_way(session, viewer.id, target.id):
        raise NotAllowed("You cannot follow this user.")
    status = "pending" if target.is_private else "active"
    try:
        with session.begin_nested():
            session.add(Follow(follower_id=viewer.id, followee_id=target.id, status=status))
    except IntegrityError:  # already following or requested: nothing changes
        return Change("follow")
    if status == "active":
        _bump_counts(session, viewer.id, target.id, +1)
        metrics.count_after_commit(session, metrics.FOLLOWS.labels(metrics.FOLLOW))
        return Change("follow", follow_started=(viewer.id, target.id))
    metrics.count_after_commit(session, metrics.FOLLOWS.labels(metrics.FOLLOW_REQUEST))
    return Change("follow", follow_requested=(viewer.id, target.id))


def apply(session: Session, viewer: User, target: User, action: str) -> Change:
    """One of v1's six relationship actions, by `viewer` towards `target`."""
    if target.id == viewer.id:
        raise InvalidParameters("You cannot change a relationship with yourself.")
    change = _apply(session, viewer, target, action)
    if action != "unblock":  # every other action may add, end or drop a follow or a request
        follow_lists_changed(session, [viewer.id, target.id])
    if change.follow_started is None or change.follow_started != (viewer.id, target.id):
        # Anything but a plain follow of a public account touches a request or a block.
        relations_changed(session, [viewer.id, target.id])
    return change


def _apply(session: Session, viewer: User, target: User, action: str) -> Change:
    if action == "follow":
        return follow(session, viewer, target)
    if action == "unfollow":
        ended = _remove_follow(session, viewer.id, target.id) == "active"
        return Change("unfollow", follows_ended=[(viewer.id, target.id)] if ended else [])
    if action == "block":
        ended = [pair for pair in ((viewer.id, target.id), (target.id, viewer.id))
                 if _remove_follow(session, *pair) == "active"]
        if not is_blocked(session, viewer.id, target.id):
            try:
                with session.begin_nested():
                    session.add(Block(blocker_id=viewer.id, blocked_id=target.id))
            except IntegrityError:
                pass  # a concurrent block of the same user
        return Change("block", follows_ended=ended)
    if action == "unblock":
        session.execute(delete(Block).where(Block.blocker_id == viewer.id, Block.blocked_id == target.id))
        return Change("unblock")
    if action == "approve":
        if not _activate(session, target.id, viewer.id):
            if follow_status(session, target.id, viewer.id) != "active":
                raise InvalidParameters("This user has not requested to follow you.")
            return Change("approve")
        return Change("approve", follow_started=(target.id, viewer.id))
    if action == "ignore":
        session.execute(delete(Follow).where(
            Follow.follower_id == target.id, Follow.followee_id == viewer.id, Follow.status == "pending"))
        return Change("ignore")
    raise InvalidParameters(f"action must be one of: {', '.join(ACTIONS)}")


def approve_all_requests(session: Session, user: User) -> list[tuple[int, int]]:
    """An account made public accepts every pending request, as Instagram does."""
    followers = session.scalars(
        select(Follow.follower_id).where(Follow.followee_id == user.id, Follow.status == "pending")
    ).all()
    approved = [(f, user.id) for f in followers if _activate(session, f, user.id)]
    if approved:
        relations_changed(session, [user.id, *followers])
        follow_lists_changed(session, [user.id, *followers])
    return approved
