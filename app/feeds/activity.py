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
    comment_ids = [a.comment_id for a in rows if a.comment_id]
    comments = {c.id: c for c in session.scalars(select(Comment).where(Comment.id.in_(comment_ids)))} \
        if comment_ids else {}
    return [
        {
            "id": str(a.id),
            "type": a.type,
            "created_time": str(int(a.created_at.timestamp())),
            "from": reader.serializer.user_summary(actors[a.actor_id]),
            "media": media.get(a.photo_id),
            "comment": (reader.serializer.comment_json(comments[a.comment_id], actors[a.actor_id])
                        if a.comment_id in comments else None),
            # linked_account_revoked: which network (the photo that could not be shared is "media")
            **({"network": a.detail} if a.type == "linked_account_revoked" else {}),
        }
        for a in rows if a.actor_id in actors
    ]
