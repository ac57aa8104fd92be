"""What every API area shares: the envelope, auth, ids, pagination."""
from __future__ import annotations

import functools
import json
import logging
from urllib.parse import quote, urlencode

import flask_smorest
import marshmallow as ma
import orjson
from flask import current_app, g, request
from sqlalchemy.orm import Session
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import HTTPException

from app.accounts.auth import request_signature, signature_matches
from app.api import formats
from app.api.docs import token_auth
from app.errors import (
    ForbiddenSignature,
    InvalidParameters,
    NotFound,
    OAuthAccessTokenError,
    OAuthParameterError,
    OAuthPermissionsError,
    ServiceUnavailable,
    error_response,
)
from app.media.imaging import ImageRejected
from app.media.storage import StorageError
from app.platform import urls
from app.services import services
from models import Client, User
from models.ids import MAX_ID

log = logging.getLogger(__name__)


class Parser(FlaskParser):
    # v1 answers bad parameters with 400, not webargs' 422; flask-smorest documents this status too.
    DEFAULT_VALIDATION_STATUS = 400

    def load_form(self, req, schema):
        # A JSON body (application/json) is taken wherever form fields are (API.md, Conventions);
        # load_json is webargs' (missing unless the body is JSON, 400 when it is bad JSON).
        data = self.load_json(req, schema)
        return data if data is not ma.missing else super().load_form(req, schema)


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = Parser()


def _refuse_nul(value: str) -> None:
    # PostgreSQL text cannot hold NUL: psycopg refuses such a parameter (a 500) where SQLite
    # stores it. A 400 on both stacks.
    if "\x00" in value:
        raise ma.ValidationError("must not contain NUL characters")


class Schema(ma.Schema):
    """Request schemas ignore what they don't name (access_token, sig, …)."""

    class Meta:
        unknown = ma.EXCLUDE

    def on_bind_field(self, field_name: str, field_obj: ma.fields.Field) -> None:
        # Every text field (Email and Url are ones) refuses NUL, checked only when the request
        # sends it: a pre_load over all fields cost every request ~5 µs, a warm feed read included.
        # A new list: a bound field is a shallow copy, sharing its class's list.
        if isinstance(field_obj, ma.fields.String):
            field_obj.validators = [*field_obj.validators, _refuse_nul]


class PageArgs(Schema):
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    max_id = ma.fields.String(load_default=None)
    min_id = ma.fields.String(load_default=None)


class CursorArgs(Schema):
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    cursor = ma.fields.String(load_default=None)


def ok(data=None, *, pagination: dict | None = None, code: int = 200):
    body = {"meta": {"code": code}, "data": data}
    if pagination is not None:
        body["pagination"] = pagination
    return body, code


def ok_rendered(data: str, *, pagination: dict | None = None):
    """ok() for data already rendered as JSON text (the warm reads: app.reads, the feed)."""
    tail = "" if pagination is None else f',"pagination":{orjson.dumps(pagination).decode()}'
    return current_app.response_class(f'{{"meta":{{"code":200}},"data":{data}{tail}}}',
                                      mimetype="application/json")


def warm_viewer(rendered) -> None:
    """A warm read's token (the cached lookup the script read) checked as
    authenticate() checks it: nothing is sent before this passes."""
    authorize(services.tokens.from_cached(rendered.token))


def token_first(view):
    """For a route that authenticates itself after parsing its arguments (a warm
    read): input it refuses is refused after the token is checked, as under
    require_token, so a bad or missing token is still the first thing said."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        try:
            return view(*args, **kwargs)
        except (HTTPException, InvalidParameters):
            if "token" not in g:
                authenticate()
            raise

    return wrapper


def warm_ids(*raw_ids: tuple[str | None, str]) -> list[int | None] | None:
    """parse_id of each (raw, what) for a warm read, or None when one is malformed:
    the long way says so, after authenticating as require_token would."""
    try:
        return [parse_id(raw, what) for raw, what in raw_ids]
    except InvalidParameters:
        return None


def next_page(cursor_name: str, cursor, url_param: str | None = None) -> dict:
    """v1's pagination block: the next cursor and the URL that fetches it.

    The URL is fetched as it is (the official client adds no token, sig or host to
    it), so it carries the caller's query parameters, access_token included when it
    came in the query (one sent as a Bearer header stays there), and, when this
    request was signed, a sig of its own."""
    if cursor is None:
        return {}
    name = url_param or cursor_name
    params = {k: v for k, v in request.args.items() if k not in {name, "sig"}}
    params[name] = str(cursor)
    secret = g.get("signing_secret")
    if secret is not None:
        params["sig"] = request_signature(secret, _endpoint(), params)
    return {"next_url": f"{urls.base_url()}{formats.requested_suffix()}?{urlencode(params)}",
            cursor_name: str(cursor)}


READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def db() -> Session:
    """The request's database session, closed when the request ends.

    A GET's transactions only read, so on SQLite they take no write lock (a GET that
    writes calls models.begin_write first)."""
    if "db_session" not in g:
        g.db_session = services.db.session(read_only=request.method in READ_ONLY_METHODS)
    return g.db_session


def parse_id(raw: str | None, what: str = "id") -> int | None:
    """A 64-bit id sent as a string; None when absent, 400 when malformed."""
    if raw is None or raw == "":
        return None
    # Media ids are "<photo id>_<owner id>" as in v1; the photo id alone is enough.
    head = raw.split("_", 1)[0]
    if not (head.isascii() and head.isdigit()) or int(head) > MAX_ID:  # isdigit() alone takes "²", "٣"
        raise InvalidParameters(f"invalid {what}: {raw!r}")
    return int(head)


def user_or_404(user_id: str) -> User:
    """`self` or a numeric id → the user."""
    if user_id == "self":
        return current_user()
    user = db().get(User, parse_id(user_id, "user id"))
    if user is None:
        raise NotFound("this user does not exist")
    return user


def body_params() -> dict[str, str]:
    """The request body's fields as text: a form's, or a JSON object's (a value that is
    not a string as its JSON text, e.g. `5`, `true`)."""
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            return {}
        return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in data.items()}
    return request.form.to_dict()


def _request_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.args.get("access_token") or body_params().get("access_token")


def _endpoint() -> str:
    """What a signature names: the path after /v1, with the format suffix the client sent."""
    path = request.path[3:] if request.path.startswith("/v1/") else request.path
    return path + formats.requested_suffix()


def _sent_sigs() -> list[str]:
    """Every `sig` sent: the official client puts two in a GET's query (auth.signature_matches)."""
    body_sig = body_params().get("sig")
    return request.args.getlist("sig") + ([body_sig] if body_sig is not None else [])


def check_signature(client: Client, enforce: bool) -> None:
    """The client's `sig`s: none is fine unless it enforces signed requests; once any
    is sent, one must be right (auth.signature_matches says which forms are). A request
    that passed has its next_url signed too (next_page)."""
    sigs = _sent_sigs()
    if not sigs and not enforce:
        return
    params = {**request.args.to_dict(), **body_params()}
    params.pop("sig", None)
    endpoint = _endpoint()
    # The client signs the path percent-encoded (quote(), '/' kept); request.path is decoded.
    endpoints = [endpoint, quote(endpoint)]
    if not signature_matches(client.client_secret, endpoints, params, sigs):
        raise ForbiddenSignature("Invalid signed-request: missing or wrong sig")
    g.signing_secret = client.client_secret


def request_token() -> str:
    """The request's access token; 400 when it sent none."""
    raw = _request_token()
    if not raw:
        raise OAuthParameterError("Missing access_token")
    return raw


def authorize(info, scopes: tuple[str, ...] = ()) -> None:
    """Check a resolved token (auth.TokenInfo) against `scopes` and the client's
    signing rule, then make it the request's token (g.token)."""
    missing = [scope for scope in scopes if scope not in info.scopes]
    if missing:
        raise OAuthPermissionsError(f"This request requires scope={','.join(missing)}, "
                                    f"but this access token is not authorized with this scope.")
    if info.enforce_signed_requests or _sent_sigs():
        check_signature(db().get(Client, info.client_pk), info.enforce_signed_requests)
    g.token = info


def authenticate(scopes: tuple[str, ...] = ()) -> None:
    """Resolve the request's token (Redis, then the database) and authorize it."""
    info = services.tokens.resolve(db(), request_token())
    if info is None:
        raise OAuthAccessTokenError("The access_token provided is invalid.")
    authorize(info, scopes)


def require_token(*scopes: str):
    """Authenticate with an access token that carries `scopes` (basic is implied); /docs says so
    (security, and the 400/403 that authentication answers)."""

    def decorator(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            authenticate(scopes)
            return view(*args, **kwargs)

        return token_auth(*scopes)(wrapper)

    return decorator


def current_user() -> User:
    if "viewer" not in g:
        user = db().get(User, g.token.user_id)
        if user is None:  # the account was deleted after the token was cached
            raise OAuthAccessTokenError("The access_token provided is invalid.")
        g.viewer = user
    return g.viewer


def register_media_error_handlers(app) -> None:
    """The envelope for what the media domain raises, on any endpoint."""

    @app.errorhandler(ImageRejected)
    def handle_rejected_image(error: ImageRejected):
        # Any endpoint that takes an image (uploads, profile pictures) refuses it alike.
        code = 415 if error.error_type == "APIUnsupportedMediaType" else 400
        return error_response(code, error.error_type, error.message)

    @app.errorhandler(StorageError)
    def handle_storage_error(error: StorageError):
        # The photo storage (S3) failed: nothing was committed, the client may retry.
        log.warning("storage unavailable: %s", error)
        unavailable = ServiceUnavailable("The photo storage is unavailable; try again later.")
        return error_response(unavailable.code, unavailable.error_type, unavailable.message)
