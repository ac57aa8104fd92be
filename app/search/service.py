"""The search service: what routes, tasks and the rebuild command call.

It builds documents from the database rows (the truth) and hands them to the
backend (app/search/interface.py: Redis or Solr); it asks the backend for ids
and answers with the rows they name, filtered by the one visibility rule
(app/social/visibility.py): a private photo never reaches a viewer who may
not see it, and a viewer blocked by someone sees nothing of theirs, whatever
the index holds (a photo deleted or an account turned private a moment ago
included). The index only narrows the search.

Time windows: v1's media search looked back 5 days by default and refused a
window longer than 7; so does this one (the Redis backend reads one GEO set
per day of the window).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable, Iterator

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import InvalidParameters
from app.search.interface import (
    Circle,
    LocationDocument,
    PhotoDocument,
    SearchBackend,
    TagDocument,
    UserDocument,
)
from app.social import visibility
from models import Block, Location, Photo, PhotoTag, Subscription, Tag, User
from models.ids import millis_of_id

DEFAULT_DISTANCE_M = 1000
MAX_DISTANCE_M = 5000
DEFAULT_WINDOW_MS = 5 * 86_400_000
MAX_WINDOW_MS = 7 * 86_400_000
WINDOW_GRACE_MS = 60_000  # "7 days before now", computed by a client a moment before its request
MAX_ROUNDS = 10  # backend pages read per search before answering with what is visible so far
REBUILD_BATCH = 500


@dataclass(frozen=True)
class Window:
    """[since_ms, until_ms): when the photos searched for were taken."""

    since_ms: int
    until_ms: int


def window(min_timestamp: int | None, max_timestamp: int | None, now_ms: int | None = None) -> Window:
    """v1's min/max_timestamp (Unix seconds, both inclusive) as a window; the default
    looks back DEFAULT_WINDOW_MS from max_timestamp (or now), and MAX_WINDOW_MS is the most."""
    until_ms = (max_timestamp + 1) * 1000 if max_timestamp is not None else (now_ms or int(time.time() * 1000)) + 1
    since_ms = min_timestamp * 1000 if min_timestamp is not None else until_ms - DEFAULT_WINDOW_MS
    if since_ms >= until_ms:
        raise InvalidParameters("min_timestamp must not be after max_timestamp")
    if until_ms - since_ms > MAX_WINDOW_MS + WINDOW_GRACE_MS:
        raise InvalidParameters("the time window (max_timestamp - min_timestamp) must not exceed 7 days")
    return Window(since_ms, until_ms)


def recent_window(now_ms: int | None = None) -> Window:
    """The longest window, up to now: a geography's recent media."""
    until_ms = (now_ms or int(time.time() * 1000)) + 1
    return Window(until_ms - MAX_WINDOW_MS, until_ms)


class SearchService:
    def __init__(self, backend: SearchBackend, db) -> None:
        self.backend = backend
        self.db = db  # models.Database: indexing reads the primary (a replica may lag the commit)

    # -- indexing (tasks/search.py, the after-commit steps, the rebuild) ---------------
    def index_photo(self, photo_id: int) -> bool:
        """A photo that became ready: its document, its location's and its tags' counts.
        A photo that is gone, not ready or has no position leaves the index."""
        with self.db.session(read_only=True) as session:
            photo = session.get(Photo, photo_id)
            tag_ids = session.scalars(select(PhotoTag.tag_id).where(PhotoTag.photo_id == photo_id)).all()
            docs = self._photo_documents(session, [photo] if photo is not None else [])
            location = session.get(Location, photo.location_id) if photo is not None and photo.location_id else None
        if not docs:
            self.backend.remove_photos([photo_id])
        else:
            self.backend.index_photos(docs)
        if location is not None:
            self.backend.index_locations([_location_document(location)])
        self.index_tags(tag_ids)
        return bool(docs)

    def remove_photo(self, photo_id: int) -> None:
        """A deleted photo leaves the index (its tags' counts: index_tags, after the delete's commit)."""
        self.backend.remove_photos([photo_id])

    def index_tags(self, tag_ids: Iterable[int]) -> None:
        tag_ids = list(tag_ids)
        if not tag_ids:
            return
        with self.db.session(read_only=True) as session:
            tags = session.scalars(select(Tag).where(Tag.id.in_(tag_ids))).all()
            self.backend.index_tags([TagDocument(t.name, t.media_count) for t in tags])

    def index_users(self, user_ids: Iterable[int]) -> None:
        user_ids = list(user_ids)
        with self.db.session(read_only=True) as session:
            users = session.scalars(select(User).where(User.id.in_(user_ids))).all() if user_ids else []
            docs = [_user_document(u) for u in users]
        self.backend.index_users(docs)
        self.backend.remove_users([i for i in user_ids if i not in {d.user_id for d in docs}])

    def reindex_owner(self, user_id: int) -> int:
        """An account turned private or public: its photos' documents say so again."""
        done = 0
        with self.db.session(read_only=True) as session:
            for photos in _batches(session, _geo_photos().where(Photo.user_id == user_id)):
                docs = self._photo_documents(session, photos)
                self.backend.index_photos(docs)
                done += len(docs)
        return done

    @staticmethod
    def _photo_documents(session: Session, photos: list[Photo]) -> list[PhotoDocument]:
        photos = [p for p in photos if p.status == "ready" and p.latitude is not None and p.longitude is not None]
        if not photos:
            return []
        ids = [p.id for p in photos]
        private = dict(session.execute(select(User.id, User.is_private)
                                       .where(User.id.in_({p.user_id for p in photos}))).all())
        names: dict[int, list[str]] = {}
        for photo_id, name in session.execute(select(PhotoTag.photo_id, Tag.name).join(Tag, Tag.id == PhotoTag.tag_id)
                                              .where(PhotoTag.photo_id.in_(ids))):
            names.setdefault(photo_id, []).append(name)
        return [PhotoDocument(
            photo_id=p.id, owner_id=p.user_id, latitude=p.latitude, longitude=p.longitude,
            created_ms=millis_of_id(p.id), private=bool(private.get(p.user_id)), caption=p.caption,
            tags=tuple(sorted(names.get(p.id, ()))), location_id=p.location_id,
        ) for p in photos]

    # -- the rebuild (app/cli.py) ---------------------------------------------------------
    def rebuild_totals(self) -> dict[str, int]:
        """How many documents of each kind a rebuild writes, for its progress bar."""
        with self.db.session(read_only=True) as session:
            count = lambda query: session.scalar(select(func.count()).select_from(query.subquery()))  # noqa: E731
            return {"photos": count(_geo_photos()), "locations": count(select(Location.id)),
                    "users": count(select(User.id)), "tags": count(select(Tag.id).where(Tag.media_count > 0))}

    def rebuild(self, clear: bool = True) -> Iterator[tuple[str, int]]:
        """Index everything again from the database, yielding (kind, documents written)
        after each batch. `clear` empties the index first (searches miss what is not
        written again yet); without it, documents of rows deleted meanwhile stay (the
        results are filtered by the database anyway)."""
        if clear:
            self.backend.clear()
        with self.db.session(read_only=True) as session:
            for photos in _batches(session, _geo_photos()):
                docs = self._photo_documents(session, photos)
                self.backend.index_photos(docs)
                yield "photos", len(photos)
            for locations in _batches(session, select(Location).order_by(Location.id), Location.id):
                self.backend.index_locations([_location_document(loc) for loc in locations])
                yield "locations", len(locations)
            for users in _batches(session, select(User).order_by(User.id), User.id):
                self.backend.index_users([_user_document(u) for u in users])
                yield "users", len(users)
            for tags in _batches(session, select(Tag).where(Tag.media_count > 0).order_by(Tag.id), Tag.id):
                self.backend.index_tags([TagDocument(t.name, t.media_count) for t in tags])
                yield "tags", len(tags)
        self.backend.flush()

    # -- queries (the routes) -----------------------------------------------------------------
    def media_near(self, session: Session, viewer_id: int, circle: Circle, when: Window, count: int,
                   before_id: int | None = None, after_id: int | None = None) -> list[int]:
        """Ids of the photos in `circle` taken within `when` that the viewer may see, newest
        first; `before_id`/`after_id`: exclusive id cursors (v1's max_id/min_id)."""
        since_ms = max(when.since_ms, millis_of_id(after_id)) if after_id is not None else when.since_ms
        private_owners = frozenset(visibility.followed_private_owners(session, viewer_id) | {viewer_id})
        batch = max(2 * count, 40)
        found: list[int] = []
        for _round in range(MAX_ROUNDS):
            ids = self.backend.photos_near(circle, since_ms, when.until_ms, batch, before_id=before_id,
                                           private_owners=private_owners)
            if after_id is not None:
                ids = [i for i in ids if i > after_id]
            visible = visibility.visible_photo_ids(session, viewer_id, ids)
            found += [i for i in ids if i in visible]
            if len(found) >= count or len(ids) < batch:
                break
            before_id = ids[-1]
        return found[:count]

    def locations_near(self, session: Session, circle: Circle, count: int) -> list[Location]:
        ids = self.backend.locations_near(circle, count)
        rows = {loc.id: loc for loc in session.scalars(select(Location).where(Location.id.in_(ids)))} if ids else {}
        return [rows[i] for i in ids if i in rows]

    @staticmethod
    def geography(session: Session, geography_id: int, client_pk: int) -> Circle | None:
        """The area of a geography subscription (its id is the geography's), or None. A
        geography is its API client's, as in v1: another client's id is unknown here."""
        subscription = session.get(Subscription, geography_id)
        if (subscription is None or subscription.object != "geography" or subscription.latitude is None
                or subscription.client_pk != client_pk):
            return None
        return Circle(subscription.latitude, subscription.longitude, float(subscription.radius or DEFAULT_DISTANCE_M))

    def users_starting(self, session: Session, viewer_id: int, query: str, count: int) -> list[User]:
        """Users whose username, then those whose full name, starts with `query` (case
        folded), in that order; never someone who blocked the viewer."""
        prefix = query.lower()
        blockers = set(session.scalars(select(Block.blocker_id).where(Block.blocked_id == viewer_id)))
        limit = count + len(blockers)  # enough left once the blockers are taken out
        ids = self.backend.usernames_starting(prefix, limit) + self.backend.full_names_starting(prefix, limit)
        ordered = [i for i in dict.fromkeys(ids) if i not in blockers][:count]
        rows = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ordered)))} if ordered else {}
        return [rows[i] for i in ordered if i in rows]

    def tags_starting(self, session: Session, query: str, count: int) -> list[Tag]:
        """Tags with published media starting with `query`, the most used first (the
        counts are the database's; the index only finds the names)."""
        names = self.backend.tags_starting(query.lower(), count)
        tags = session.scalars(select(Tag).where(Tag.name.in_(names), Tag.media_count > 0)).all() if names else []
        return sorted(tags, key=lambda t: (-t.media_count, t.name))


def _geo_photos():
    return select(Photo).where(Photo.status == "ready", Photo.latitude.is_not(None),
                               Photo.longitude.is_not(None)).order_by(Photo.id)


def _batches(session: Session, query, key=Photo.id, size: int = REBUILD_BATCH) -> Iterator[list]:
    """The rows of `query` (ordered by `key`), a batch at a time, by keyset."""
    last = None
    while True:
        page = query if last is None else query.where(key > last)
        rows = list(session.scalars(page.limit(size)))
        if not rows:
            return
        yield rows
        last = rows[-1].id
        if len(rows) < size:
            return


def _location_document(location: Location) -> LocationDocument:
    return LocationDocument(location.id, location.name, location.latitude, location.longitude)


def _user_document(user: User) -> UserDocument:
    return UserDocument(user.id, user.username_key, (user.full_name or "").lower())
