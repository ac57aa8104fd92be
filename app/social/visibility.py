"""Who may see whose media: the one rule every read applies.

A ready photo shows to its owner, and to others if the owner is public or
they follow the owner (an active follow, not a pending request), never when
either has blocked the other. A photo still processing (or failed) shows to
its owner alone, by id (app.media.reader.visible_photo); lists show ready ones. The warm
feed read applies the same rule in Lua (app/feeds/rendered.py); a test runs
both over the same cases (tests/test_visibility_rule.py).
"""
from __future__ import annotations

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from models import Block, Follow, Photo, User


def follow_status(session: Session, follower_id: int, followee_id: int) -> str | None:
    return session.scalar(
        select(Follow.status).where(Follow.follower_id == follower_id, Follow.followee_id == followee_id)
    )


def is_blocked(session: Session, blocker_id: int, blocked_id: int) -> bool:
    return bool(session.scalar(select(exists().where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id))))


def blocked_either_way(session: Session, a: int, b: int) -> bool:
    return bool(session.scalar(select(exists().where(or_(
        (Block.blocker_id == a) & (Block.blocked_id == b),
        (Block.blocker_id == b) & (Block.blocked_id == a),
    )))))


def can_view_media(session: Session, viewer_id: int, owner: User) -> bool:
    """Private accounts show their media to approved followers only; blocks hide everything."""
    if viewer_id == owner.id:
        return True
    if blocked_either_way(session, viewer_id, owner.id):
        return False
    return not owner.is_private or follow_status(session, viewer_id, owner.id) == "active"


def followed_private_owners(session: Session, viewer_id: int) -> set[int]:
    """The private accounts whose media the viewer may see (as an approved follower),
    before blocks: a search index's pre-filter, never the rule itself."""
    return set(session.scalars(
        select(Follow.followee_id).join(User, User.id == Follow.followee_id)
        .where(Follow.follower_id == viewer_id, Follow.status == "active", User.is_private.is_(True))
    ))


def may_view(viewer_id, owner: User):
    """can_view_media as a condition on `viewer_id`, a column of user ids (or a value): that
    user may see `owner`'s media. For queries that ask who among many may (app.realtime)."""
    blocked = exists().where(or_(
        and_(Block.blocker_id == viewer_id, Block.blocked_id == owner.id),
        and_(Block.blocker_id == owner.id, Block.blocked_id == viewer_id),
    ))
    if not owner.is_private:
        return or_(viewer_id == owner.id, ~blocked)
    follows = exists().where(Follow.follower_id == viewer_id, Follow.followee_id == owner.id, Follow.status == "active")
    return or_(viewer_id == owner.id, and_(~blocked, follows))


def visible_to(viewer_id: int):
    """A condition on Photo: ready, and its owner's media visible to the viewer.

    Private owners show media to approved followers only; a block either way
    hides everything. Use it in a query that joins User on Photo.user_id.
    """
    blocked = exists().where(or_(
        and_(Block.blocker_id == viewer_id, Block.blocked_id == Photo.user_id),
        and_(Block.blocker_id == Photo.user_id, Block.blocked_id == viewer_id),
    ))
    follows = exists().where(
        Follow.follower_id == viewer_id, Follow.followee_id == Photo.user_id, Follow.status == "active")
    return and_(
        Photo.status == "ready",
        ~blocked,
        or_(Photo.user_id == viewer_id, User.is_private.is_(False), follows),
    )


def visible_photo_ids(session: Session, viewer_id: int, photo_ids) -> set[int]:
    """Those of `photo_ids` the viewer may see."""
    photo_ids = list(photo_ids)
    if not photo_ids:
        return set()
    return set(session.scalars(
        select(Photo.id).join(User, User.id == Photo.user_id)
        .where(Photo.id.in_(photo_ids), visible_to(viewer_id))
    ))
