"""Likes and comments, and the mentions in what people write.

Counts on `photos` change in the transaction that adds or removes the row
they count, by `UPDATE … SET n = n ± 1` only when a row really appeared
(insert in a savepoint; a duplicate fails the savepoint, not the request)
or really disappeared (DELETE … RETURNING), so they stay exact under
concurrent requests. Each writer registers, before its commit, what must
follow it (app/platform/aftercommit.py): the activity's mirror in Redis, and dropping
what the cache and the rendered feed (app/feeds/rendered.py) hold of the photo.
"""
from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.engagement import activity
from app.errors import APIError, NotFound
from app.platform import metrics
from app.platform.changes import like_listed, liked_changed, photo_changed
from app.platform.paging import split_page
from app.social.visibility import visible_to
from models import Activity, Comment, Like, Photo, User

def _commit(session: Session, photo_id: int) -> None:
    """Commit the caller's transaction; the photo's cached copies go after it."""
    photo_changed(session, photo_id)
    try:
        session.commit()
    except Exception:
        session.rollback()  # drops the registered steps too
        raise


def _bump(session: Session, photo_id: int, **deltas: int) -> None:
    session.execute(
        update(Photo).where(Photo.id == photo_id)
        .values({getattr(Photo, name): getattr(Photo, name) + delta for name, delta in deltas.items()}),
        execution_options={"synchronize_session": False},
    )


def _require_ready(photo: Photo) -> None:
    # The owner can read a photo still processing, but nobody acts on it before it is published.
    if photo.status != "ready":
        raise APIError("this media is not published yet", error_type="APINotAllowedError")


# -- likes -------------------------------------------------------------------

def like(session: Session, viewer_id: int, photo: Photo) -> bool:
    """Like a photo; False when the viewer already did (nothing changes)."""
    _require_ready(photo)
    row = Like(photo_id=photo.id, user_id=viewer_id)
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        session.rollback()
        return False
    _bump(session, photo.id, like_count=+1)
    activity.record(session, photo.user_id, viewer_id, "like", photo.id)
    liked_changed(session, viewer_id, photo.id, True)
    like_listed(session, viewer_id, row.id, photo.id, True)
    metrics.count_after_commit(session, metrics.LIKES)
    _commit(session, photo.id)
    return True


def unlike(session: Session, viewer_id: int, photo: Photo) -> bool:
    """Take a like back; False when there was none."""
    removed = session.scalar(
        delete(Like).where(Like.photo_id == photo.id, Like.user_id == viewer_id).returning(Like.id))
    if removed is None:
        session.rollback()
        return False
    _bump(session, photo.id, like_count=-1)
    activity.remove(session, Activity.type == "like", Activity.actor_id == viewer_id, Activity.photo_id == photo.id)
    liked_changed(session, viewer_id, photo.id, False)
    like_listed(session, viewer_id, removed, photo.id, False)
    _commit(session, photo.id)
    return True


def likers(session: Session, photo: Photo, count: int, max_like_id: int | None) -> tuple[list[int], int | None]:
    """Ids of the users who liked the photo, newest like first, and the next cursor."""
    query = select(Like.id, Like.user_id).where(Like.photo_id == photo.id).order_by(Like.id.desc()).limit(count + 1)
    if max_like_id is not None:
        query = query.where(Like.id < max_like_id)
    rows, cursor = split_page(session.execute(query).all(), count, lambda row: row.id)
    return [r.user_id for r in rows], cursor


def liked(session: Session, viewer_id: int, count: int, max_like_id: int | None) -> tuple[list[int], int | None]:
    """Ids of the photos the viewer liked and may still see, newest like first, and the next cursor."""
    query = (
        select(Like.id, Like.photo_id)
        .join(Photo, Photo.id == Like.photo_id)
        .join(User, User.id == Photo.user_id)
        .where(Like.user_id == viewer_id, visible_to(viewer_id))
        .order_by(Like.id.desc())
        .limit(count + 1)
    )
    if max_like_id is not None:
        query = query.where(Like.id < max_like_id)
    rows, cursor = split_page(session.execute(query).all(), count, lambda row: row.id)
    return [r.photo_id for r in rows], cursor


# -- comments ----------------------------------------------------------------

def add_comment(session: Session, viewer_id: int, photo: Photo, body: str) -> Comment:
    _require_ready(photo)
    comment = Comment(photo_id=photo.id, user_id=viewer_id, text=body)
    session.add(comment)
    session.flush()
    _bump(session, photo.id, comment_count=+1)
    activity.record(session, photo.user_id, viewer_id, "comment", photo.id, comment.id)
    # The owner already hears of the comment; a mention would say it twice.
    activity.record_mentions(session, viewer_id, photo, body, comment.id, skip={photo.user_id})
    metrics.count_after_commit(session, metrics.COMMENTS)
    _commit(session, photo.id)
    return comment


def delete_comment(session: Session, viewer_id: int, photo: Photo, comment_id: int) -> None:
    """The comment's author or the photo's owner may delete it."""
    author = session.scalar(select(Comment.user_id).where(Comment.id == comment_id, Comment.photo_id == photo.id))
    if author is None:
        raise NotFound("invalid comment id")
    if viewer_id not in (author, photo.user_id):
        raise APIError("you can only delete your own comments or comments on your media",
                       code=403, error_type="APINotAllowedError")
    # Its activity goes too (explicitly, to learn the ids that Redis holds).
    activity.remove(session, Activity.comment_id == comment_id)
    removed = session.scalar(delete(Comment).where(Comment.id == comment_id).returning(Comment.id))
    if removed is None:  # a concurrent delete won
        session.rollback()
        return
    _bump(session, photo.id, comment_count=-1)
    _commit(session, photo.id)


def comments(session: Session, photo: Photo, count: int, after: int | None) -> tuple[list[Comment], int | None]:
    """The photo's comments, oldest first as in v1, and the cursor of the next page."""
    query = select(Comment).where(Comment.photo_id == photo.id).order_by(Comment.id).limit(count + 1)
    if after is not None:
        query = query.where(Comment.id > after)
    return split_page(session.scalars(query).all(), count, lambda comment: comment.id)
