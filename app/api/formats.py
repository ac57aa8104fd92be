"""Requests as v1 took them, made plain before Flask routes them.

- A `.json` suffix on the last segment of a `/v1` path names the same resource:
  `/v1/media/123_4.json` is `/v1/media/123_4`, `/v1/users/self/feed.json` the
  feed (the official client appends it to every call but the shortcode one).
  Any other format suffix (a dot, then a letter and letters or digits: `.xml`,
  `.atom`) is a 404 envelope: no id, tag name or other last segment Shutter
  routes can hold a dot (ids are digits and `_`, tag names `\\w`, shortcodes
  URL-safe base64), so such a suffix is always a format. Anything else after a
  dot (`/v1/users/1.5`) is left to the route, which refuses it as a bad id.
- A body sent without a Content-Type is read as urlencoded, as v1 read it: the
  official client's token exchange posts `client_id=…&…` with no header at all.
  (A JSON body is taken wherever a form is: app.api.common.Parser.)

The suffix is kept in the WSGI environ: signatures cover the path as the
client sent it, and next_url keeps the caller's spelling.
"""
from __future__ import annotations

import re

from flask import Flask, request

from app.errors import NotFound

JSON_SUFFIX = ".json"
SUFFIX_KEY = "shutter.v1_format_suffix"  # the suffix stripped from PATH_INFO, e.g. ".json"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORMAT_SUFFIX = re.compile(r"(?<=[^/.])\.[A-Za-z][A-Za-z0-9]*\Z")  # ".json", ".xml"; not "1.5"


class V1Requests:
    """WSGI middleware: strips the format suffix, defaults a body's Content-Type."""

    def __init__(self, wsgi_app) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        suffix = FORMAT_SUFFIX.search(path) if path.startswith("/v1/") else None
        if suffix:
            environ[SUFFIX_KEY] = suffix.group()
            environ["PATH_INFO"] = path[:suffix.start()]
        if not environ.get("CONTENT_TYPE") and environ.get("REQUEST_METHOD") in BODY_METHODS and _has_body(environ):
            environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
        return self.wsgi_app(environ, start_response)


def _has_body(environ) -> bool:
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return True
    try:
        return int(environ.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return False


def requested_suffix() -> str:
    """The format suffix this request's path carried ("" or ".json")."""
    return request.environ.get(SUFFIX_KEY, "")


def init_app(app: Flask) -> None:
    app.wsgi_app = V1Requests(app.wsgi_app)

    @app.before_request
    def refuse_other_formats():
        suffix = requested_suffix()
        if suffix and suffix != JSON_SUFFIX:
            raise NotFound(f"unsupported format {suffix!r}: only JSON is served (add .json or nothing)")
