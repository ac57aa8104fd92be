"""The Solr search backend, through pysolr, on the schema in ops/solr/managed-schema.xml.

One collection holds four kinds of documents, told apart by `doc_type`
(ids `photo-<id>`, `location-<id>`, `user-<id>`, `tag-<name>`). Photos carry
their owner, caption, tags, position (a LatLonPointSpatialField, searched with
`{!geofilt}`: great-circle distance, right across the antimeridian and at the
poles), the time they were taken and their owner's visibility (`public` or
`private`, a filter query: a private photo is asked for only from the owners
the viewer may see; the service still filters every result by the one rule).

Commit policy: additions carry `commitWithin` (COMMIT_WITHIN_MS, Solr's
near-real-time soft commit within a second, so indexing never waits on a
commit and a burst of updates shares one); deletions, which pysolr sends
without commitWithin, ask for `softCommit=true` so a deleted photo leaves the
results at once; a rebuild (flush) ends with an explicit hard commit.

Not run against a live Solr (none can be installed on the development
machines): tests/solr_server.py implements the part of Solr's API used here
and checks every request against the shipped schema.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Sequence

import pysolr

from app.search.interface import (
    Circle,
    LocationDocument,
    PhotoDocument,
    SearchUnavailable,
    TagDocument,
    UserDocument,
)

COMMIT_WITHIN_MS = 1000
TIMEOUT_SECONDS = 5
_SPECIAL = re.compile(r'([+\-!(){}\[\]^"~*?:\\/&|\s])')


def escape(value: str) -> str:
    """A literal for Solr's standard query parser (a term or the stem of a prefix query)."""
    return _SPECIAL.sub(r"\\\1", value)


def solr_time(millis: int) -> str:
    """A DatePointField value: ISO 8601 in UTC, to the millisecond."""
    moment = datetime.fromtimestamp(millis // 1000, tz=timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z"


def _geofilt(circle: Circle) -> str:
    return f"{{!geofilt sfield=location pt={circle.latitude!r},{circle.longitude!r} d={circle.radius_m / 1000!r}}}"


@contextmanager
def _answering():
    """pysolr raises SolrError for a Solr that is down, slow or refusing: one error for the callers."""
    try:
        yield
    except pysolr.SolrError as error:
        raise SearchUnavailable(f"Solr: {error}") from error


class SolrSearch:
    def __init__(self, url: str, session=None) -> None:
        self.solr = pysolr.Solr(url, timeout=TIMEOUT_SECONDS, session=session)

    def _add(self, docs: list[dict]) -> None:
        if docs:
            with _answering():
                self.solr.add(docs, commitWithin=COMMIT_WITHIN_MS)

    def _delete(self, ids: list[str]) -> None:
        if ids:
            with _answering():
                self.solr.delete(id=ids, softCommit=True)

    def _ids(self, query: str, *filters: str, sort: str, limit: int, field: str = "item_id", **params) -> list:
        with _answering():
            results = self.solr.search(query, fq=list(filters), sort=sort, rows=limit, fl=field, **params)
        return [doc[field] for doc in results]

    # -- photos -------------------------------------------------------------------
    def index_photos(self, docs: Sequence[PhotoDocument]) -> None:
        self._add([{
            "id": f"photo-{doc.photo_id}", "doc_type": "photo", "item_id": doc.photo_id,
            "owner_id": doc.owner_id, "caption": doc.caption, "tags": list(doc.tags),
            "location": f"{doc.latitude!r},{doc.longitude!r}", "location_id": doc.location_id,
            "created_time": solr_time(doc.created_ms), "visibility": "private" if doc.private else "public",
        } for doc in docs])

    def remove_photos(self, photo_ids: Sequence[int]) -> None:
        self._delete([f"photo-{photo_id}" for photo_id in photo_ids])

    def photos_near(self, circle: Circle, since_ms: int, until_ms: int, limit: int, *,
                    before_id: int | None = None, private_owners: frozenset[int] = frozenset()) -> list[int]:
        if until_ms <= since_ms:
            return []
        filters = ["doc_type:photo", _geofilt(circle),
                   f"created_time:[{solr_time(since_ms)} TO {solr_time(until_ms)}}}"]
        if before_id is not None:
            filters.append(f"item_id:[* TO {before_id}}}")
        owners = " ".join(str(owner) for owner in sorted(private_owners))
        filters.append(f"visibility:public OR owner_id:({owners})" if owners else "visibility:public")
        return self._ids("*:*", *filters, sort="created_time desc,item_id desc", limit=limit)

    # -- locations -------------------------------------------------------------------
    def index_locations(self, docs: Sequence[LocationDocument]) -> None:
        self._add([{
            "id": f"location-{doc.location_id}", "doc_type": "location", "item_id": doc.location_id,
            "name": doc.name, "location": f"{doc.latitude!r},{doc.longitude!r}",
        } for doc in docs])

    def locations_near(self, circle: Circle, limit: int) -> list[int]:
        # geodist() sorts by the distance from sfield/pt, given as request parameters.
        return self._ids("*:*", "doc_type:location", _geofilt(circle), sort="geodist() asc,item_id asc",
                         limit=limit, sfield="location", pt=f"{circle.latitude!r},{circle.longitude!r}")

    # -- users ---------------------------------------------------------------------
    def index_users(self, docs: Sequence[UserDocument]) -> None:
        self._add([{
            "id": f"user-{doc.user_id}", "doc_type": "user", "item_id": doc.user_id,
            "username_key": doc.username_key, "full_name_key": doc.full_name_key,
        } for doc in docs])

    def remove_users(self, user_ids: Sequence[int]) -> None:
        self._delete([f"user-{user_id}" for user_id in user_ids])

    def usernames_starting(self, prefix: str, limit: int) -> list[int]:
        return self._ids(f"username_key:{escape(prefix)}*", "doc_type:user",
                         sort="username_key asc,item_id asc", limit=limit)

    def full_names_starting(self, prefix: str, limit: int) -> list[int]:
        return self._ids(f"full_name_key:{escape(prefix)}*", "doc_type:user",
                         sort="full_name_key asc,item_id asc", limit=limit)

    # -- tags ----------------------------------------------------------------------
    def index_tags(self, docs: Sequence[TagDocument]) -> None:
        self._add([{"id": f"tag-{doc.name}", "doc_type": "tag", "tag_name": doc.name, "media_count": doc.media_count}
                   for doc in docs if doc.media_count > 0])
        self._delete([f"tag-{doc.name}" for doc in docs if doc.media_count <= 0])

    def tags_starting(self, prefix: str, limit: int) -> list[str]:
        return self._ids(f"tag_name:{escape(prefix)}*", "doc_type:tag", "media_count:[1 TO *]",
                         sort="media_count desc,tag_name asc", limit=limit, field="tag_name")

    # -- the whole index -------------------------------------------------------------
    def clear(self) -> None:
        with _answering():
            self.solr.delete(q="*:*", softCommit=True)

    def flush(self) -> None:
        with _answering():
            self.solr.commit()
