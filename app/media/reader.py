"""Reading media: who may see a photo, and turning photos into v1 media objects.

Hydration is batched (one query per kind of thing, whatever the number of
photos), so a feed page never costs N+1 queries. Photo rows and user
summaries go through the cache service: a multi-get, the misses loaded in
one query and added back. Only `ready` photos are cached (a processing photo
changes under the workers, which do not invalidate); the writers of what a
cached entry holds invalidate its key after their commit (likes, comments,
deletion → photo key; profile edits → user key). User entries hold no
counts, so follows and uploads leave them alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select, union_all
from sqlalchemy.orm import Session, make_transient_to_detached

from app.errors import NotAllowed, NotFound
from app.media.serializers import Serializer
from app.platform.keys import cached_media_key, cached_photo_key, cached_user_key
from app.platform.paging import split_page
from app.social import visibility
from models import Comment, Like, Location, Photo, PhotoTag, Tag, User

LIKERS_SHOWN = 4
COMMENTS_SHOWN = 8
PHOTO_TTL = 600  # invalidation keeps entries fresh; the TTL only ages out cold photos

_PHOTO_COLUMNS = [column.key for column in Photo.__table__.columns]
_DATETIME_COLUMNS = {"created_at", "updated_at", "ready_at"}


@dataclass(frozen=True)
class UserSummary:
    """What a user object in a media, comment or like list needs (no counts)."""

    id: int
    username: str
    full_name: str
    profile_picture_key: str | None


# -- cached rows -------------------------------------------------------------

def _photo_entry(photo: Photo) -> dict:
    entry = {name: getattr(photo, name) for name in _PHOTO_COLUMNS}
    for name in _DATETIME_COLUMNS:
        if entry[name] is not None:
            entry[name] = entry[name].isoformat()
    return entry


def _photo_from_entry(session: Session, entry: dict) -> Photo:
    values = dict(entry)
    for name in _DATETIME_COLUMNS:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    photo = Photo(**{name: values.get(name) for name in _PHOTO_COLUMNS})
    make_transient_to_detached(photo)
    # A persistent instance, as if loaded by the session (delete, refresh work on it).
    return session.merge(photo, load=False)


# -- media objects -----------------------------------------------------------

def _newest_per_photo(session: Session, columns, id_column, photo_column, photo_ids, limit: int):
    """The `limit` newest rows per photo, in one query: a UNION ALL of per-photo
    LIMITs, each an index range scan, so a photo with 100k likes costs the same."""
    branches = [
        select(*columns).where(photo_column == photo_id).order_by(id_column.desc()).limit(limit).subquery().select()
        for photo_id in photo_ids
    ]
    return session.execute(union_all(*branches) if len(branches) > 1 else branches[0]).all()


class MediaReader:
    """Photos, user summaries and v1 media objects, through the cache."""

    def __init__(self, cache, serializer: Serializer) -> None:
        self.cache = cache  # app.platform.cache.Cache
        self.serializer = serializer

    def visible_photo(self, session: Session, viewer_id: int, photo_id: int | None) -> Photo:
        """The photo if the viewer may see it; 404/400 in v1's words otherwise."""
        photo = self.load_photos(session, [photo_id]).get(photo_id) if photo_id is not None else None
        # Others see a photo once it is ready; the owner sees it processing or failed too.
        if photo is None or (photo.status != "ready" and photo.user_id != viewer_id):
            raise NotFound("invalid media id")
        owner = session.get(User, photo.user_id)
        if visibility.is_blocked(session, owner.id, viewer_id):
            raise NotFound("invalid media id")
        if not visibility.can_view_media(session, viewer_id, owner):
            raise NotAllowed("you cannot view this resource")
        return photo

    def load_photos(self, session: Session, photo_ids) -> dict[int, Photo]:
        """Photos by id, from the cache where it has them; missing ids are left out."""
        photo_ids = list(dict.fromkeys(photo_ids))
        if not photo_ids:
            return {}
        cached = self.cache.get_many([cached_photo_key(i) for i in photo_ids])
        found = {i: _photo_from_entry(session, cached[cached_photo_key(i)]) for i in photo_ids if cached_photo_key(i) in cached}
        missing = [i for i in photo_ids if i not in found]
        if missing:
            rows = session.scalars(
                select(Photo).where(Photo.id.in_(missing)).execution_options(populate_existing=True)
            ).all()
            found.update((p.id, p) for p in rows)
            self.cache.add_many({cached_photo_key(p.id): _photo_entry(p) for p in rows if p.status == "ready"},
                                    ttl=PHOTO_TTL)
        return found

    def user_summaries(self, session: Session, user_ids) -> dict[int, UserSummary]:
        user_ids = list(dict.fromkeys(user_ids))
        if not user_ids:
            return {}
        cached = self.cache.get_many([cached_user_key(i) for i in user_ids])
        found = {i: UserSummary(**cached[cached_user_key(i)]) for i in user_ids if cached_user_key(i) in cached}
        missing = [i for i in user_ids if i not in found]
        if missing:
            loaded = {
                row.id: UserSummary(row.id, row.username, row.full_name, row.profile_picture_key)
                for row in session.execute(
                    select(User.id, User.username, User.full_name, User.profile_picture_key).where(User.id.in_(missing)))
            }
            found.update(loaded)
            self.cache.add_many({cached_user_key(i): asdict(s) for i, s in loaded.items()})
        return found

    def entries(self, session: Session, photo_ids, known: dict[int, Photo] | None = None) -> dict[int, dict]:
        """What a media object holds beyond the viewer's view, per photo id, through
        the cache: the body (with the photo's status), and the user ids of the
        owner, the newest likers and the newest comments. Misses cost one query per
        kind of thing; `known` photos need no query for their row. Ids of photos
        that do not exist are left out."""
        photo_ids = list(dict.fromkeys(photo_ids))
        cached = self.cache.get_many([cached_media_key(i) for i in photo_ids])
        entries = {i: cached[cached_media_key(i)] for i in photo_ids if cached_media_key(i) in cached}
        wanted = [i for i in photo_ids if i not in entries]
        if not wanted:
            return entries
        known = known or {}
        missing = [known[i] for i in wanted if i in known]
        unknown = [i for i in wanted if i not in known]
        if unknown:
            missing += session.scalars(select(Photo).where(Photo.id.in_(unknown))).all()
        if not missing:
            return entries
        photo_ids = [p.id for p in missing]
        location_ids = {p.location_id for p in missing if p.location_id}
        locations = {l.id: l for l in session.scalars(select(Location).where(Location.id.in_(location_ids)))} \
            if location_ids else {}
        tags: dict[int, list[str]] = {}
        for photo_id, name in session.execute(
            select(PhotoTag.photo_id, Tag.name).join(Tag, Tag.id == PhotoTag.tag_id).where(PhotoTag.photo_id.in_(photo_ids))
        ):
            tags.setdefault(photo_id, []).append(name)
        liked_ids = [p.id for p in missing if p.like_count]
        likes = _newest_per_photo(session, (Like.id, Like.photo_id, Like.user_id), Like.id, Like.photo_id,
                                  liked_ids, LIKERS_SHOWN) if liked_ids else []
        commented_ids = [p.id for p in missing if p.comment_count]
        comments = _newest_per_photo(
            session, (Comment.id, Comment.photo_id, Comment.user_id, Comment.text, Comment.created_at),
            Comment.id, Comment.photo_id, commented_ids, COMMENTS_SHOWN) if commented_ids else []
        likers: dict[int, list[int]] = {}
        for like in sorted(likes, key=lambda l: l.id, reverse=True):  # newest first, as v1 listed them
            likers.setdefault(like.photo_id, []).append(like.user_id)
        comment_rows: dict[int, list[dict]] = {}
        for comment in sorted(comments, key=lambda c: c.id):  # oldest first, as v1 listed them
            comment_rows.setdefault(comment.photo_id, []).append(
                {"user_id": comment.user_id, **self.serializer.comment_json(comment, None)})
        fresh = {
            p.id: {
                "body": self.serializer.media_body(p, location=locations.get(p.location_id), tags=sorted(tags.get(p.id, []))),
                "user_id": p.user_id, "liker_ids": likers.get(p.id, []), "comments": comment_rows.get(p.id, []),
            }
            for p in missing
        }
        entries.update(fresh)
        # Only ready photos: a processing one changes under the workers, which don't invalidate.
        self.cache.add_many({cached_media_key(p.id): fresh[p.id] for p in missing if p.status == "ready"}, ttl=PHOTO_TTL)
        return entries

    def page_users(self, session: Session, entries: dict[int, dict], photo_ids) -> dict[int, UserSummary]:
        """Everyone the media objects of `photo_ids` show: owners, likers, commenters."""
        user_ids = set()
        for i in photo_ids:
            entry = entries[i]
            user_ids.add(entry["user_id"])
            user_ids.update(entry["liker_ids"])
            user_ids.update(c["user_id"] for c in entry["comments"])
        return self.user_summaries(session, user_ids)

    def media_object(self, entry: dict, users: dict, *, user_has_liked, base: str) -> dict:
        """v1's media object from a self.entries() entry; `users` maps user ids to
        what stands for each user (user_summary() dicts). Users missing from it are
        left out (deleted meanwhile)."""
        comments = [{**{k: v for k, v in c.items() if k != "user_id"}, "from": users[c["user_id"]]}
                    for c in entry["comments"] if c["user_id"] in users]
        return self.serializer.media_json(entry["body"], users[entry["user_id"]],
                          likers=[users[i] for i in entry["liker_ids"] if i in users],
                          comments=comments, user_has_liked=user_has_liked, base=base)

    def by_ids(self, session: Session, photo_ids: list[int], viewer_id: int | None,
                     entries: dict[int, dict] | None = None, users: dict[int, UserSummary] | None = None) -> list[dict]:
        """v1 media objects for `photo_ids`, in their order, as `viewer_id` sees them.

        The caller has checked visibility; ids that no longer exist are skipped.
        """
        if entries is None:
            entries = self.entries(session, photo_ids)
        photo_ids = [i for i in photo_ids if i in entries]
        if not photo_ids:
            return []
        if users is None:
            users = self.page_users(session, entries, photo_ids)
        # Each user rendered once per page, however often they appear on it.
        base = self.serializer.url_base()
        rendered = {i: self.serializer.user_summary(u, base) for i, u in users.items()}
        liked = [i for i in photo_ids if entries[i]["body"]["likes"]["count"]]
        has_liked = set(session.scalars(
            select(Like.photo_id).where(Like.user_id == viewer_id, Like.photo_id.in_(liked))
        )) if viewer_id is not None and liked else set()
        return [
            self.media_object(entries[i], rendered, user_has_liked=i in has_liked, base=base)
            for i in photo_ids if entries[i]["user_id"] in rendered  # else the owner was deleted meanwhile
        ]

    def objects(self, session: Session, photos: list[Photo], viewer_id: int | None) -> list[dict]:
        """v1 media objects for photos already loaded, in their order."""
        known = {p.id: p for p in photos}
        return self.by_ids(session, list(known), viewer_id, self.entries(session, list(known), known))

# -- lists -------------------------------------------------------------------

def recent_ids(session: Session, viewer_id: int, *conditions, count: int, max_id: int | None = None,
               min_id: int | None = None, tag_id: int | None = None) -> tuple[list[int], int | None]:
    """Ids of the photos matching `conditions` (or tagged `tag_id`) that the viewer
    may see, newest first, and the cursor of the next page (None at the end).

    Cursors are exclusive: max_id pages back in time, min_id asks for newer ones.
    Ids are time-ordered, so cursors and timestamps need no other column.
    """
    # A tag's photos are walked along photo_tags' primary key (tag_id, photo_id).
    if tag_id is None:
        cursor = Photo.id
        query = select(Photo.id).join(User, User.id == Photo.user_id)
    else:
        cursor = PhotoTag.photo_id
        query = (select(PhotoTag.photo_id).join(Photo, Photo.id == PhotoTag.photo_id)
                 .join(User, User.id == Photo.user_id).where(PhotoTag.tag_id == tag_id))
    query = query.where(visibility.visible_to(viewer_id), *conditions).order_by(cursor.desc()).limit(count + 1)
    if max_id is not None:
        query = query.where(cursor < max_id)
    if min_id is not None:
        query = query.where(cursor > min_id)
    return split_page(session.scalars(query).all(), count)
