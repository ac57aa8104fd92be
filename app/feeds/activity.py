"""The activity feed's objects: a user's activity rows with their media and users."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.media.reader import MediaReader
from models import Activity, Comment


def activity_objects(reader: MediaReader, session: Session, rows: list[Activity], viewer_id: int) -> list[dict]:
    """The feed's JSON for `rows`: {"id", "type", "created_time", "from", "media", "comment"}."""
    actors = reader.user_summaries(session, {a.actor_id for a in rows})
    photo_ids = list(dict.fromkeys(a.photo_id for a in rows if a.photo_id))
    media = {int(m["id"].split("_")[0]): m for m in reader.by_ids(session, photo_ids, viewer_id)}
    comments = activity_comments(session, rows)
    return [
        activity_json(reader.serializer, a, reader.serializer.user_summary(actors[a.actor_id]),
                      media.get(a.photo_id), comments.get(a.comment_id))
        for a in rows if a.actor_id in actors
    ]


def activity_comments(session: Session, rows: list[Activity]) -> dict[int, Comment]:
    """The comments of these activities, by id (a deleted one is missing)."""
    comment_ids = [a.comment_id for a in rows if a.comment_id]
    return {c.id: c for c in session.scalars(select(Comment).where(Comment.id.in_(comment_ids)))} \
        if comment_ids else {}


def activity_json(serializer, a: Activity, actor, media, comment: Comment | None) -> dict:
    """One activity's object: `actor` is its actor's summary (or what stands for it:
    app.reads renders placeholders), `media` its media object or None."""
    return {
        "id": str(a.id),
        "type": a.type,
        "created_time": str(int(a.created_at.timestamp())),
        "from": actor,
        "media": media,
        "comment": {**serializer.comment_json(comment, None), "from": actor} if comment is not None else None,
        # linked_account_revoked: which network (the photo that could not be shared is "media")
        **({"network": a.detail} if a.type == "linked_account_revoked" else {}),
    }
