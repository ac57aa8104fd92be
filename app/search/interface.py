"""The search backend's contract, and the documents it indexes.

Two backends stand behind it (SEARCH_BACKEND): `redis` (app/search/redis_backend.py,
Redis GEO and sorted sets) and `solr` (app/search/solr_backend.py, pysolr).
A backend only finds ids; it never decides who may see what: the search service
(app/search/service.py) hydrates what it found from the database and applies
the one visibility rule (app/social/visibility.py) to every result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

EARTH_RADIUS_M = 6_371_008.7714  # the mean radius Solr's geofilt uses (DistanceUtils.EARTH_MEAN_RADIUS_KM)


class SearchUnavailable(Exception):
    """The search backend did not answer (or refused the request): a 503 for the API, a retry for a task."""


@dataclass(frozen=True)
class Circle:
    """An area on the sphere: a centre and a radius in metres (great-circle distance)."""

    latitude: float
    longitude: float
    radius_m: float

    def contains(self, latitude: float, longitude: float) -> bool:
        return distance_m(self.latitude, self.longitude, latitude, longitude) <= self.radius_m


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Haversine great-circle distance: right across the antimeridian and at the poles."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


@dataclass(frozen=True)
class PhotoDocument:
    photo_id: int
    owner_id: int
    latitude: float
    longitude: float
    created_ms: int  # when the photo was taken in (its id's time), Unix milliseconds
    private: bool  # the owner's account is private: only followers may see it
    caption: str | None = None
    tags: tuple[str, ...] = ()
    location_id: int | None = None


@dataclass(frozen=True)
class LocationDocument:
    location_id: int
    name: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class UserDocument:
    user_id: int
    username_key: str  # lower-cased username
    full_name_key: str  # lower-cased full name ("" when none)


@dataclass(frozen=True)
class TagDocument:
    name: str
    media_count: int  # published photos carrying it; 0 takes the tag out of the index


class SearchBackend(Protocol):
    """Finds ids. Every write is idempotent (indexing a document again replaces it)."""

    def index_photos(self, docs: Sequence[PhotoDocument]) -> None:
        """Photos with a position, searchable by area and time."""

    def remove_photos(self, photo_ids: Sequence[int]) -> None: ...

    def photos_near(self, circle: Circle, since_ms: int, until_ms: int, limit: int, *,
                    before_id: int | None = None, private_owners: frozenset[int] = frozenset()) -> list[int]:
        """Ids of photos inside `circle` taken in [since_ms, until_ms) (and with an id below
        `before_id`), newest first, at most `limit`. Private photos are needed only from
        `private_owners`; a backend may return others too (the caller filters)."""

    def index_locations(self, docs: Sequence[LocationDocument]) -> None: ...

    def locations_near(self, circle: Circle, limit: int) -> list[int]:
        """Ids of locations inside `circle`, nearest first, at most `limit`."""

    def index_users(self, docs: Sequence[UserDocument]) -> None: ...

    def remove_users(self, user_ids: Sequence[int]) -> None: ...

    def usernames_starting(self, prefix: str, limit: int) -> list[int]:
        """Ids of users whose username_key starts with `prefix` (lower-cased), in username order."""

    def full_names_starting(self, prefix: str, limit: int) -> list[int]:
        """Ids of users whose full_name_key starts with `prefix`, in full-name order."""

    def index_tags(self, docs: Sequence[TagDocument]) -> None:
        """A tag's media_count; a count of 0 removes the tag."""

    def tags_starting(self, prefix: str, limit: int) -> list[str]:
        """Names of tags starting with `prefix`, the most used first, then by name."""

    def clear(self) -> None:
        """Remove every document (before a rebuild)."""

    def flush(self) -> None:
        """Make everything written so far searchable now (Solr: a commit)."""
