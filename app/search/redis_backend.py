"""The Redis search backend: Redis GEO for photos and locations, sorted sets for names.

Photos: one GEO set per UTC day of the photo's id time (`search:photos:<day>`).
A search's time window (at most MAX_WINDOW_DAYS, app/search/service.py) picks
the few day sets it reads, GEOSEARCH BYRADIUS finds the members inside the
circle in each, and the photo id, which is time-ordered, gives the exact time:
no per-photo hash and no second index to keep in step. A day set costs what a
GEO entry costs (a sorted-set member), and a search reads at most eight sets,
in one pipelined round trip.

Distances: GEOSEARCH runs on a slightly larger radius and every hit is checked
against the circle with haversine on Solr's earth radius (Redis uses another),
so both backends agree to the metre; GEOSEARCH itself handles the antimeridian.

The poles: Redis GEO cannot index latitudes beyond ±85.05112878° (Web
Mercator's limit; GEOADD refuses them). Such points go to a plain hash
(`search:polar-photos`, `search:polar-locations`), read and filtered here when
a search's circle reaches past that latitude: few photos are taken there, so
the scan stays small. A circle whose centre is beyond the limit asks GEOSEARCH
around the nearest indexable point with the radius grown by the distance
between the two, then filters exactly.

Names: ZRANGEBYLEX over sorted sets whose members are "<key>\\0<id>" (all scores
0), so a prefix is a range; tags: one sorted set per prefix (up to
TAG_PREFIX_MAX characters) scored by -media_count, so ZRANGE answers "the most
used first, then by name" for any prefix in one read.
"""
from __future__ import annotations

import json
import math
from typing import Sequence

import redis

from app.platform import keys
from app.search.interface import (
    EARTH_RADIUS_M,
    Circle,
    LocationDocument,
    PhotoDocument,
    TagDocument,
    UserDocument,
    distance_m,
)
from models.ids import millis_of_id, min_id_for_millis

GEO_MAX_LATITUDE = 85.05112878  # Redis GEO's limit (geohash over Web Mercator)
DAY_MS = 86_400_000
TAG_PREFIX_MAX = 20  # longer queries read the 20-character prefix's set and filter it
RADIUS_SLACK = 1.001  # GEOSEARCH's earth is 0.03% bigger; the exact check follows
SCAN_BATCH = 500


def _lng(longitude: float) -> float:
    """±180° is one meridian, and Redis's geohash misses it at +180 (a point stored there is
    never found, a search centred there misses the other side): -180 for both."""
    return -180.0 if longitude >= 180.0 else longitude


def _indexable(latitude: float) -> bool:
    return -GEO_MAX_LATITUDE <= latitude <= GEO_MAX_LATITUDE


def _reaches_polar_zone(circle: Circle) -> bool:
    reach = math.degrees(circle.radius_m / EARTH_RADIUS_M)
    return circle.latitude + reach > GEO_MAX_LATITUDE or circle.latitude - reach < -GEO_MAX_LATITUDE


def _geosearch_args(circle: Circle) -> dict:
    """GEOSEARCH's centre and radius covering `circle` (see the module's note on the poles)."""
    latitude = max(-GEO_MAX_LATITUDE, min(GEO_MAX_LATITUDE, circle.latitude))
    shift = math.radians(abs(circle.latitude - latitude)) * EARTH_RADIUS_M  # 0 unless beyond the limit
    return {"longitude": _lng(circle.longitude), "latitude": latitude,
            "radius": (circle.radius_m + shift) * RADIUS_SLACK + 1, "unit": "m"}


def _point(value: str) -> tuple[float, float]:
    latitude, longitude = value.split(",")
    return float(latitude), float(longitude)


def _prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds of every member starting with `prefix` (0xFF never occurs in UTF-8)."""
    encoded = prefix.encode()
    return b"[" + encoded, b"(" + encoded + b"\xff"


def _member_id(member: str) -> int:
    return int(member.rsplit("\0", 1)[1])


class RedisSearch:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    # -- photos -------------------------------------------------------------------
    def index_photos(self, docs: Sequence[PhotoDocument]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for doc in docs:
            if _indexable(doc.latitude):
                pipe.geoadd(keys.search_photos_day_key(millis_of_id(doc.photo_id) // DAY_MS),
                            (_lng(doc.longitude), doc.latitude, doc.photo_id))
            else:
                pipe.hset(keys.SEARCH_POLAR_PHOTOS, doc.photo_id, f"{doc.latitude},{doc.longitude}")
        pipe.execute()

    def remove_photos(self, photo_ids: Sequence[int]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for photo_id in photo_ids:
            pipe.zrem(keys.search_photos_day_key(millis_of_id(photo_id) // DAY_MS), photo_id)
            pipe.hdel(keys.SEARCH_POLAR_PHOTOS, photo_id)
        pipe.execute()

    def photos_near(self, circle: Circle, since_ms: int, until_ms: int, limit: int, *,
                    before_id: int | None = None, private_owners: frozenset[int] = frozenset()) -> list[int]:
        # Visibility is not known here: the service filters every id (private_owners unused).
        lowest, highest = min_id_for_millis(since_ms), min_id_for_millis(until_ms)  # [lowest, highest)
        if before_id is not None:
            highest = min(highest, before_id)
            until_ms = min(until_ms, millis_of_id(before_id) + 1)
        if until_ms <= since_ms:
            return []
        days = range((until_ms - 1) // DAY_MS, since_ms // DAY_MS - 1, -1)
        pipe = self.redis.pipeline(transaction=False)
        around = _geosearch_args(circle)
        for day in days:
            pipe.geosearch(keys.search_photos_day_key(day), withcoord=True, **around)
        polar = _reaches_polar_zone(circle)
        if polar:
            pipe.hgetall(keys.SEARCH_POLAR_PHOTOS)
        replies = pipe.execute()
        found = [(int(member), lat, lng) for reply in (replies[:-1] if polar else replies)
                 for member, (lng, lat) in reply]
        if polar:
            found += [(int(member), *_point(value)) for member, value in replies[-1].items()]
        ids = {photo_id for photo_id, lat, lng in found
               if lowest <= photo_id < highest and circle.contains(lat, lng)}
        return sorted(ids, reverse=True)[:limit]

    # -- locations -------------------------------------------------------------------
    def index_locations(self, docs: Sequence[LocationDocument]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for doc in docs:
            if _indexable(doc.latitude):
                pipe.geoadd(keys.SEARCH_LOCATIONS, (_lng(doc.longitude), doc.latitude, doc.location_id))
            else:
                pipe.hset(keys.SEARCH_POLAR_LOCATIONS, doc.location_id, f"{doc.latitude},{doc.longitude}")
        pipe.execute()

    def locations_near(self, circle: Circle, limit: int) -> list[int]:
        # Nearest first: GEOSEARCH ASC COUNT gives the nearest `limit` on its own earth,
        # the same order as ours; those past the exact radius are the farthest ones.
        pipe = self.redis.pipeline(transaction=False)
        pipe.geosearch(keys.SEARCH_LOCATIONS, withcoord=True, sort="ASC", count=limit, **_geosearch_args(circle))
        polar = _reaches_polar_zone(circle)
        if polar:
            pipe.hgetall(keys.SEARCH_POLAR_LOCATIONS)
        replies = pipe.execute()
        found = [(int(member), lat, lng) for member, (lng, lat) in replies[0]]
        if polar:
            found += [(int(member), *_point(value)) for member, value in replies[1].items()]
        by_distance = sorted((distance_m(circle.latitude, circle.longitude, lat, lng), location_id)
                             for location_id, lat, lng in found)
        return [location_id for distance, location_id in by_distance if distance <= circle.radius_m][:limit]

    # -- users ---------------------------------------------------------------------
    def index_users(self, docs: Sequence[UserDocument]) -> None:
        if not docs:
            return
        previous = self.redis.hmget(keys.SEARCH_USER_ENTRIES, [doc.user_id for doc in docs])
        pipe = self.redis.pipeline(transaction=False)
        for doc, old in zip(docs, previous):
            self._remove_entries(pipe, old)
            username = f"{doc.username_key}\0{doc.user_id}"
            full_name = f"{doc.full_name_key}\0{doc.user_id}" if doc.full_name_key else None
            pipe.zadd(keys.SEARCH_USERNAMES, {username: 0})
            if full_name:
                pipe.zadd(keys.SEARCH_FULL_NAMES, {full_name: 0})
            pipe.hset(keys.SEARCH_USER_ENTRIES, doc.user_id, json.dumps([username, full_name]))
        pipe.execute()

    def remove_users(self, user_ids: Sequence[int]) -> None:
        if not user_ids:
            return
        previous = self.redis.hmget(keys.SEARCH_USER_ENTRIES, list(user_ids))
        pipe = self.redis.pipeline(transaction=False)
        for user_id, old in zip(user_ids, previous):
            self._remove_entries(pipe, old)
            pipe.hdel(keys.SEARCH_USER_ENTRIES, user_id)
        pipe.execute()

    @staticmethod
    def _remove_entries(pipe, old: str | None) -> None:
        if old is None:
            return
        username, full_name = json.loads(old)
        pipe.zrem(keys.SEARCH_USERNAMES, username)
        if full_name:
            pipe.zrem(keys.SEARCH_FULL_NAMES, full_name)

    def usernames_starting(self, prefix: str, limit: int) -> list[int]:
        low, high = _prefix_range(prefix)
        return [_member_id(m) for m in self.redis.zrangebylex(keys.SEARCH_USERNAMES, low, high, start=0, num=limit)]

    def full_names_starting(self, prefix: str, limit: int) -> list[int]:
        low, high = _prefix_range(prefix)
        return [_member_id(m) for m in self.redis.zrangebylex(keys.SEARCH_FULL_NAMES, low, high, start=0, num=limit)]

    # -- tags ----------------------------------------------------------------------
    def index_tags(self, docs: Sequence[TagDocument]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for doc in docs:
            for length in range(1, min(len(doc.name), TAG_PREFIX_MAX) + 1):
                key = keys.search_tag_prefix_key(doc.name[:length])
                if doc.media_count > 0:
                    pipe.zadd(key, {doc.name: -doc.media_count})
                else:
                    pipe.zrem(key, doc.name)
        pipe.execute()

    def tags_starting(self, prefix: str, limit: int) -> list[str]:
        key = keys.search_tag_prefix_key(prefix[:TAG_PREFIX_MAX])
        if len(prefix) <= TAG_PREFIX_MAX:
            return self.redis.zrange(key, 0, limit - 1)
        # The set of a 20-character prefix is small: read it whole, keep what starts with `prefix`.
        return [name for name in self.redis.zrange(key, 0, -1) if name.startswith(prefix)][:limit]

    # -- the whole index -------------------------------------------------------------
    def clear(self) -> None:
        batch = []
        for key in self.redis.scan_iter(match=f"{keys.SEARCH}*", count=SCAN_BATCH):
            batch.append(key)
            if len(batch) >= SCAN_BATCH:
                self.redis.unlink(*batch)
                batch = []
        if batch:
            self.redis.unlink(*batch)

    def flush(self) -> None:
        """Every write is searchable as soon as it is made."""

