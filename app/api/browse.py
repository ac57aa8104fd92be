"""Lists of media: a user's, a tag's, a location's, and the popular ones; tags and locations."""
from __future__ import annotations

import marshmallow as ma

from app.api.common import (
    Blueprint,
    PageArgs,
    Schema,
    authenticate,
    current_user,
    db,
    next_page,
    ok,
    ok_rendered,
    parse_id,
    request_token,
    require_token,
    user_or_404,
    warm_viewer,
)
from app.api.docs import errors, success, token_auth
from app.engagement import popular, tags
from app.errors import InvalidParameters, NotAllowed, NotFound
from app.feeds.rendered import Miss, Rendered
from app.media.reader import recent_ids
from app.media.serializers import location_json, tag_json
from app.platform import text
from app.services import services
from app.social import visibility
from models import Location, Photo
from models.ids import LAST_ID_SECOND, min_id_for_millis

blp = Blueprint("browse", __name__, url_prefix="/v1", description="Media by user, tag, location; popular")


class RecentArgs(PageArgs):
    # Unix seconds, up to the last one an id can hold (a later bound would overflow the query)
    max_timestamp = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=0, max=LAST_ID_SECOND))
    min_timestamp = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=0, max=LAST_ID_SECOND))


class TagPageArgs(Schema):
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    max_tag_id = ma.fields.String(load_default=None)
    min_tag_id = ma.fields.String(load_default=None)


class TagSearchArgs(Schema):
    q = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))


class CountArgs(Schema):
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))


def _recent_page(args, objects, *conditions):
    """A page of media for `conditions`, with v1's max_id/min_id/timestamp parameters;
    `objects(ids)`: the media objects of the page's photo ids."""
    if args["max_timestamp"] is not None:  # photos made up to the end of that second
        conditions += (Photo.id < min_id_for_millis((args["max_timestamp"] + 1) * 1000),)
    if args["min_timestamp"] is not None:
        conditions += (Photo.id >= min_id_for_millis(args["min_timestamp"] * 1000),)
    viewer = current_user()
    ids, cursor = recent_ids(db(), viewer.id, *conditions, count=args["count"],
                             max_id=parse_id(args["max_id"], "max_id"), min_id=parse_id(args["min_id"], "min_id"))
    return ok(objects(ids), pagination=next_page("next_max_id", cursor, url_param="max_id"))


def _recent_bounds(args) -> tuple[int | None, int | None]:
    """_recent_page's cursors and timestamps as one exclusive id range (upper, lower)."""
    upper, lower = parse_id(args["max_id"], "max_id"), parse_id(args["min_id"], "min_id")
    if args["max_timestamp"] is not None:
        bound = min_id_for_millis((args["max_timestamp"] + 1) * 1000)
        upper = bound if upper is None else min(upper, bound)
    if args["min_timestamp"] is not None:
        bound = min_id_for_millis(args["min_timestamp"] * 1000) - 1
        lower = bound if lower is None else max(lower, bound)
    return upper, lower


def _warm_ids(*params) -> tuple | None:
    """(raw, name) pairs parsed for the warm try; None when one is malformed: the long
    way refuses it, after the token, as before."""
    try:
        return tuple(parse_id(raw, name) for raw, name in params)
    except InvalidParameters:
        return None


def _warm_bounds(args) -> tuple[int | None, int | None] | None:
    try:
        return _recent_bounds(args)
    except InvalidParameters:
        return None


def _warm_page(warm: Rendered, cursor_name: str, url_param: str):
    """A warm list's answer, once its token passed (app/reads/lists.py)."""
    warm_viewer(warm)
    return ok_rendered(f"[{warm.data}]", pagination=next_page(cursor_name, warm.next or None, url_param=url_param))


@blp.route("/users/<user_id>/media/recent", methods=["GET"])
@success(blp, 200, "A page of media, newest first, with pagination")
@errors(404)
@token_auth()  # it authenticates itself (the warm read checks the token with the list)
@blp.arguments(RecentArgs(), location="query")
def user_media(args, user_id):
    """A user's published media, newest first."""
    raw_token, base = request_token(), services.serializer.url_base()
    who = ("self",) if user_id == "self" else _warm_ids((user_id, "user id"))
    bounds, warm = _warm_bounds(args), Miss("input", 0)
    if who is not None and bounds is not None:
        warm = services.lists.user_media(services.tokens.key(raw_token), who[0], args["count"], *bounds, base)
        if isinstance(warm, Rendered):
            return _warm_page(warm, "next_max_id", "max_id")
    authenticate()
    owner = user_or_404(user_id)
    if visibility.is_blocked(db(), owner.id, current_user().id):
        raise NotFound("this user does not exist")
    if not visibility.can_view_media(db(), current_user().id, owner):
        raise NotAllowed("you cannot view this user's media")
    return _recent_page(args, lambda ids: services.lists.user_media_page(
        db(), current_user().id, warm, owner.id, ids, args["count"], *bounds, base), Photo.user_id == owner.id)


def _tag_name(name: str) -> str:
    normal = text.normal_tag_name(name)
    if normal is None:
        raise InvalidParameters("invalid tag name: letters, digits and '_' only, up to 100")
    return normal


@blp.route("/tags/<name>", methods=["GET"])
@success(blp, 200, "The tag: name, media_count")
@require_token()
def get_tag(name):
    """A tag and how many published media carry it."""
    name = _tag_name(name)
    tag = tags.get(db(), name)
    return ok(tag_json(tag) if tag else {"name": name, "media_count": 0})


@blp.route("/tags/<name>/media/recent", methods=["GET"])
@success(blp, 200, "A page of media, newest first, with pagination")
@token_auth()  # it authenticates itself (the warm read checks the token with the list)
@blp.arguments(TagPageArgs(), location="query")
def tag_media(args, name):
    """Media tagged with this tag, newest first (count, max_tag_id, min_tag_id)."""
    raw_token, base = request_token(), services.serializer.url_base()
    normal = text.normal_tag_name(name)
    cursors, warm = _warm_ids((args["max_tag_id"], "max_tag_id"), (args["min_tag_id"], "min_tag_id")), Miss("input", 0)
    if normal is not None and cursors is not None:
        warm = services.lists.tag_media(services.tokens.key(raw_token), normal, args["count"], *cursors, base)
        if isinstance(warm, Rendered):
            return _warm_page(warm, "next_max_tag_id", "max_tag_id")
    authenticate()
    tag = tags.get(db(), _tag_name(name))
    max_id, min_id = parse_id(args["max_tag_id"], "max_tag_id"), parse_id(args["min_tag_id"], "min_tag_id")
    viewer_id = current_user().id
    ids, cursor = recent_ids(db(), viewer_id, count=args["count"], max_id=max_id, min_id=min_id,
                             tag_id=tag.id) if tag else ([], None)
    media = services.lists.tag_media_page(db(), viewer_id, warm, normal, ids, args["count"], max_id, min_id, base)
    return ok(media, pagination=next_page("next_max_tag_id", cursor, url_param="max_tag_id"))


@blp.route("/tags/search", methods=["GET"])
@success(blp, 200, "Matching tags, the most used first")
@require_token()
@blp.arguments(TagSearchArgs(), location="query")
def search_tags(args):
    """Tags starting with q, the most used first."""
    q = args["q"].lstrip("#")
    if text.normal_tag_name(q) is None:
        raise InvalidParameters("q: letters, digits and '_' only")
    return ok([tag_json(t) for t in services.search.tags_starting(db(), q, args["count"])])


def _location(location_id: str) -> Location:
    location = db().get(Location, parse_id(location_id, "location id"))
    if location is None:
        raise NotFound("invalid location id")
    return location


@blp.route("/locations/<location_id>", methods=["GET"])
@success(blp, 200, "The location")
@errors(404)
@require_token()
def get_location(location_id):
    """A location."""
    return ok(location_json(_location(location_id)))


@blp.route("/locations/<location_id>/media/recent", methods=["GET"])
@success(blp, 200, "A page of media, newest first, with pagination")
@errors(404)
@token_auth()  # it authenticates itself (the warm read checks the token with the list)
@blp.arguments(RecentArgs(), location="query")
def location_media(args, location_id):
    """Media at this location, newest first."""
    raw_token, base = request_token(), services.serializer.url_base()
    place = _warm_ids((location_id, "location id"))
    bounds, warm = _warm_bounds(args), Miss("input", 0)
    if place is not None and bounds is not None:
        warm = services.lists.location_media(services.tokens.key(raw_token), place[0], args["count"], *bounds, base)
        if isinstance(warm, Rendered):
            return _warm_page(warm, "next_max_id", "max_id")
    authenticate()
    location = _location(location_id)
    return _recent_page(args, lambda ids: services.lists.location_media_page(
        db(), current_user().id, warm, location.id, ids, args["count"], *bounds, base),
        Photo.location_id == location.id)


@blp.route("/media/popular", methods=["GET"])
@success(blp, 200, "Popular media")
@token_auth()  # it authenticates itself (the warm read checks the token with the list)
@blp.arguments(CountArgs(), location="query")
def popular_media(args):
    """Popular recent media (ranked every minute by likes and comments, with time decay)."""
    raw_token, base = request_token(), services.serializer.url_base()
    warm = services.lists.popular(services.tokens.key(raw_token), args["count"], base)
    if isinstance(warm, Rendered):
        warm_viewer(warm)
        return ok_rendered(f"[{warm.data}]")
    authenticate()
    viewer_id = current_user().id
    # Ranked for everyone; the viewer's own blocks are applied here.
    ids = popular.ranked_ids(services.redis, args["count"])
    visible = visibility.visible_photo_ids(db(), viewer_id, ids)
    return ok(services.lists.popular_page(db(), viewer_id, warm, ids, [i for i in ids if i in visible], base))
