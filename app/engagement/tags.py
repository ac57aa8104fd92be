"""Hashtags: caption tags linked to photos, and each tag's count of published media.

As in v1, only a caption's tags link a photo to a tag (a comment's do not).
`Tag.media_count` counts READY photos: it goes up when a photo is published
and down when a published photo is deleted, by `UPDATE … SET n = n ± 1` in
the transaction that changes the photo's status, so it stays exact.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.platform import text
from app.platform.changes import tags_counted
from models import PhotoTag, Tag


def _tag_id(session: Session, name: str) -> int:
    """The tag's id, creating the tag; a concurrent creator of the same name wins harmlessly."""
    existing = session.scalar(select(Tag.id).where(Tag.name == name))
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            tag = Tag(name=name, media_count=0)
            session.add(tag)
        return tag.id
    except IntegrityError:
        return session.scalar(select(Tag.id).where(Tag.name == name))


def attach(session: Session, photo_id: int, caption: str | None) -> list[str]:
    """Link a new photo (flushed, not yet ready) to its caption's tags."""
    names = text.tags(caption)
    for name in sorted(names):  # one order for every transaction: no lock-order deadlocks
        session.add(PhotoTag(tag_id=_tag_id(session, name), photo_id=photo_id))
    session.flush()
    return names


def count_photo(session: Session, photo_id: int, delta: int) -> None:
    """A photo became ready (+1) or a ready photo is going (-1): its tags' media_count."""
    count_tags(session, session.scalars(select(PhotoTag.tag_id).where(PhotoTag.photo_id == photo_id)).all(), delta)


def count_tags(session: Session, tag_ids, delta: int) -> None:
    """count_photo for tag ids read beforehand (a delete reads them before its links go);
    after the commit the search index gets the new counts."""
    tag_ids = list(tag_ids)
    tags_counted(session, tag_ids)
    for tag_id in sorted(tag_ids):  # row locks taken in id order: concurrent publishes cannot deadlock
        session.execute(
            update(Tag).where(Tag.id == tag_id).values(media_count=Tag.media_count + delta),
            execution_options={"synchronize_session": False},
        )


def names_of(session: Session, photo_id: int) -> list[str]:
    """The names of a photo's tags."""
    return list(session.scalars(select(Tag.name).join(PhotoTag, PhotoTag.tag_id == Tag.id)
                                .where(PhotoTag.photo_id == photo_id).order_by(Tag.name)))


def get(session: Session, name: str) -> Tag | None:
    return session.scalar(select(Tag).where(Tag.name == name))

