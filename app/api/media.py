"""Media: upload, read by id or shortcode, delete."""
from __future__ import annotations

import marshmallow as ma
from flask import g, request
from flask_smorest.fields import Upload

from app.api.common import (Blueprint, Schema, authenticate, current_user, db, ok, ok_rendered, parse_id,
                            request_token, require_token, warm_viewer)
from app.api.docs import errors, multipart, success, token_auth
from app.feeds.rendered import Rendered
from app.errors import APIError, InvalidParameters, NotFound
from app.media import pipeline
from app.services import services
from models.ids import id_from_shortcode

blp = Blueprint("media", __name__, url_prefix="/v1", description="Photos")

SHARE_TARGETS = {"twitter", "facebook"}
IDEMPOTENCY_KEY_MAX = 100  # photos.idempotency_key is String(100)
IDEMPOTENCY_KEY = {  # /docs: the header _idempotency_key() reads
    "in": "header", "name": "Idempotency-Key", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX},
    "description": "a retry with the same key returns the same media, never a second one",
}


class UploadArgs(Schema):
    caption = ma.fields.String(load_default=None, validate=ma.validate.Length(max=2200))
    lat = ma.fields.Float(load_default=None, validate=ma.validate.Range(min=-90, max=90))
    lng = ma.fields.Float(load_default=None, validate=ma.validate.Range(min=-180, max=180))
    location_name = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=200))
    filter = ma.fields.String(load_default="Normal", validate=ma.validate.Length(min=1, max=40))
    share_to = ma.fields.String(load_default="")

    @ma.validates_schema
    def check(self, data, **_kwargs):
        if (data["lat"] is None) != (data["lng"] is None):
            raise ma.ValidationError("lat and lng go together", field_name="lat")
        if data["location_name"] and data["lat"] is None:
            raise ma.ValidationError("a location needs lat and lng", field_name="location_name")
        unknown = set(_share_targets(data["share_to"])) - SHARE_TARGETS
        if unknown:
            raise ma.ValidationError(f"unknown targets {sorted(unknown)}; use twitter, facebook", field_name="share_to")


class UploadForm(UploadArgs):
    """/docs only: the upload's multipart form. `photo` is not parsed through it: upload() reads
    request.files and refuses a missing or bad file with its own errors (400, 413, 415)."""

    photo = Upload(required=True, metadata={"description": "the image: JPEG, PNG, WebP or HEIC"})


def _share_targets(raw: str) -> list[str]:
    return sorted({part.strip().lower() for part in raw.split(",") if part.strip()})


def _idempotency_key() -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= IDEMPOTENCY_KEY_MAX and key.isprintable()):
        raise InvalidParameters(f"Idempotency-Key must be 1–{IDEMPOTENCY_KEY_MAX} printable characters")
    return key


@blp.route("/media/upload", methods=["POST"])
@success(blp, 202, "Accepted: the media, `status: processing` (the same media again for a known Idempotency-Key)")
@errors(413, 415, 503)
@multipart(UploadForm)
@blp.doc(parameters=[IDEMPOTENCY_KEY])
@require_token("publish")
@blp.arguments(UploadArgs(), location="form", content_type="multipart/form-data")  # the type: docs only
def upload(args):
    """Upload a photo (multipart `photo`): 202 + the media, `status: processing`."""
    key = _idempotency_key()
    upload_file = request.files.get("photo")
    if upload_file is None:
        raise InvalidParameters("photo: a file is required (multipart/form-data)")
    fields = pipeline.UploadFields(
        caption=args["caption"], latitude=args["lat"], longitude=args["lng"],
        location_name=args["location_name"], filter=args["filter"],
        share_to=_share_targets(args["share_to"]), idempotency_key=key,
    )
    photo, _created = pipeline.accept_upload(
        db(), services.storage, services.celery, current_user(), upload_file.read(), fields,
        services.settings.max_image_pixels,
    )
    return ok(services.media.objects(db(), [photo], current_user().id)[0], code=202)


@blp.route("/media/<media_id>", methods=["GET"])
@success(blp, 200, "The media object")
@errors(404)
@token_auth()  # it authenticates itself (the warm read checks the token with the media)
def get_media(media_id):
    """A media object by id ("<photo id>_<owner id>" or the photo id)."""
    raw_token = request_token()  # a missing token is the first thing said
    return _media(raw_token, parse_id(media_id, "media id"))


@blp.route("/media/shortcode/<code>", methods=["GET"])
@success(blp, 200, "The media object")
@errors(404)
@token_auth()
def get_media_by_shortcode(code):
    """A media object by its shortcode (the code in its link)."""
    raw_token = request_token()
    photo_id = id_from_shortcode(code)
    if photo_id is None:
        authenticate()
        raise NotFound("invalid shortcode")
    return _media(raw_token, photo_id)


def _media(raw_token: str, photo_id: int):
    base = services.serializer.url_base()
    warm = services.reads.media(services.tokens.key(raw_token), photo_id, base)
    if isinstance(warm, Rendered):
        warm_viewer(warm)
        return ok_rendered(warm.data)
    authenticate()
    photo = services.media.visible_photo(db(), g.token.user_id, photo_id)
    return ok(services.reads.media_object(db(), g.token.user_id, warm, photo, base))


@blp.route("/media/<media_id>", methods=["DELETE"])
@success(blp, 200, "Deleted (data: null)")
@errors(404)
@require_token("publish")
def delete_media(media_id):
    """Delete your own photo: from storage, feeds, search and everything else."""
    session = db()
    photo = services.media.visible_photo(session, current_user().id, parse_id(media_id, "media id"))
    if photo.user_id != current_user().id:
        raise APIError("you can only delete your own media", code=403, error_type="APINotAllowedError")
    if not pipeline.delete_photo(session, services.storage, photo, services.celery, services.search):
        raise NotFound("invalid media id")  # a concurrent delete of the same photo won
    return ok(None)
