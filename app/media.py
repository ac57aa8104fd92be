"""Reading media: who may see a photo, and turning photos into v1 media objects.

Hydration is batched (one query per kind of thing, whatever the number of
photos), so a feed page never costs N+1 queries.
"""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import social
from app.errors import NotAllowed, NotFound
from app.serializers import media_json
from models import Location, Photo, PhotoTag, Tag, User


def visible_photo(session: Session, viewer_id: int, photo_id: int | None) -> Photo:
    """The photo if the viewer may see it; 404/400 in v1's words otherwise."""
    photo = session.get(Photo, photo_id) if photo_id is not None else None
    # Others see a photo once it is ready; the owner sees it processing or failed too.
    if photo is None or (photo.status != "ready" and photo.user_id != viewer_id):
        raise NotFound("invalid media id")
    owner = session.get(User, photo.user_id)
    if social.is_blocked(session, owner.id, viewer_id):
        raise NotFound("invalid media id")
    if not social.can_view_media(session, viewer_id, owner):
        raise NotAllowed("you cannot view this resource")
    return photo


def media_objects(session: Session, photos: list[Photo], viewer_id: int | None) -> list[dict]:
    if not photos:
        return []
    photo_ids = [p.id for p in photos]
    owners = {u.id: u for u in session.scalars(select(User).where(User.id.in_({p.user_id for p in photos})))}
    location_ids = {p.location_id for p in photos if p.location_id}
    locations = {l.id: l for l in session.scalars(select(Location).where(Location.id.in_(location_ids)))} \
        if location_ids else {}
    tags: dict[int, list[str]] = {}
    for photo_id, name in session.execute(
        select(PhotoTag.photo_id, Tag.name).join(Tag, Tag.id == PhotoTag.tag_id).where(PhotoTag.photo_id.in_(photo_ids))
    ):
        tags.setdefault(photo_id, []).append(name)
    return [
        media_json(p, owners[p.user_id], location=locations.get(p.location_id), tags=sorted(tags.get(p.id, [])))
        for p in photos
    ]
