"""Search by place: media and locations near a point, a geography's recent media."""
from __future__ import annotations

import logging

import marshmallow as ma
from flask import g

from app.api.common import Blueprint, PageArgs, Schema, current_user, db, next_page, ok, parse_id, require_token
from app.api.docs import errors, success
from app.errors import NotFound, ServiceUnavailable, error_response
from app.media.serializers import location_json
from app.search.interface import Circle, SearchUnavailable
from app.search.service import DEFAULT_DISTANCE_M, MAX_DISTANCE_M, recent_window, window
from app.services import services
from models.ids import LAST_ID_SECOND

blp = Blueprint("search", __name__, url_prefix="/v1", description="Media and locations by place")
log = logging.getLogger(__name__)

# v1's location search also took places of other services; Shutter has none of theirs.
FOREIGN_PLACE_IDS = ("foursquare_id", "foursquare_v2_id", "facebook_places_id")


class AreaArgs(Schema):
    lat = ma.fields.Float(load_default=None, validate=ma.validate.Range(min=-90, max=90))
    lng = ma.fields.Float(load_default=None, validate=ma.validate.Range(min=-180, max=180))
    distance = ma.fields.Float(load_default=DEFAULT_DISTANCE_M, metadata={"description": "metres, at most 5000"},
                               validate=ma.validate.Range(min=0, max=MAX_DISTANCE_M, min_inclusive=False))
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))

    @ma.validates_schema
    def _needs_a_point(self, data, **_kwargs):
        if data.get("lat") is None or data.get("lng") is None:
            raise ma.ValidationError("lat and lng are required", field_name="lat")


class MediaSearchArgs(AreaArgs):
    # Unix seconds; the window is at most 7 days and defaults to the 5 before max_timestamp (or now)
    min_timestamp = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=0, max=LAST_ID_SECOND))
    max_timestamp = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=0, max=LAST_ID_SECOND))


class LocationSearchArgs(AreaArgs):
    foursquare_id = ma.fields.String(load_default=None)
    foursquare_v2_id = ma.fields.String(load_default=None)
    facebook_places_id = ma.fields.String(load_default=None)

    @ma.validates_schema
    def _needs_a_point(self, data, **_kwargs):
        if not any(data.get(name) for name in FOREIGN_PLACE_IDS):
            super()._needs_a_point(data)


def _circle(args) -> Circle:
    return Circle(args["lat"], args["lng"], args["distance"])


@blp.route("/media/search", methods=["GET"])
@success(blp, 200, "Media taken within `distance` of (lat, lng), newest first")
@errors(503)
@require_token()
@blp.arguments(MediaSearchArgs(), location="query")
def search_media(args):
    """Media near a point (lat, lng; distance in metres, default 1000, at most 5000), taken
    between min_timestamp and max_timestamp (at most 7 days; by default the last 5)."""
    viewer = current_user()
    ids = services.search.media_near(db(), viewer.id, _circle(args),
                                     window(args["min_timestamp"], args["max_timestamp"]), args["count"])
    return ok(services.media.by_ids(db(), ids, viewer.id))


@blp.route("/locations/search", methods=["GET"])
@success(blp, 200, "Locations within `distance` of (lat, lng), nearest first")
@errors(503)
@require_token()
@blp.arguments(LocationSearchArgs(), location="query")
def search_locations(args):
    """Locations near a point (lat, lng, distance in metres). v1's foursquare_id,
    foursquare_v2_id and facebook_places_id name no Shutter place: an empty list."""
    if any(args[name] for name in FOREIGN_PLACE_IDS):
        return ok([])
    return ok([location_json(loc) for loc in services.search.locations_near(db(), _circle(args), args["count"])])


@blp.route("/geographies/<geography_id>/media/recent", methods=["GET"])
@success(blp, 200, "Recent media in the geography's area, newest first, with pagination")
@errors(404, 503)
@require_token()
@blp.arguments(PageArgs(), location="query")
def geography_media(args, geography_id):
    """Recent media (the last 7 days) inside a geography subscription's area (count, max_id, min_id)."""
    circle = services.search.geography(db(), parse_id(geography_id, "geography id"), g.token.client_pk)
    if circle is None:  # no such geography, or another API client's
        raise NotFound("invalid geography id")
    viewer = current_user()
    count = args["count"]
    ids = services.search.media_near(db(), viewer.id, circle, recent_window(), count + 1,
                                     before_id=parse_id(args["max_id"], "max_id"),
                                     after_id=parse_id(args["min_id"], "min_id"))
    cursor = ids[count - 1] if len(ids) > count else None
    return ok(services.media.by_ids(db(), ids[:count], viewer.id),
              pagination=next_page("next_max_id", cursor, url_param="max_id"))


def register_search_error_handlers(app) -> None:
    """The envelope for a search backend that does not answer, on any endpoint (users and
    tags search too): 503, the client may retry."""

    @app.errorhandler(SearchUnavailable)
    def handle_search_unavailable(error: SearchUnavailable):
        log.warning("search unavailable: %s", error)
        unavailable = ServiceUnavailable("Search is unavailable; try again later.")
        return error_response(unavailable.code, unavailable.error_type, unavailable.message)
