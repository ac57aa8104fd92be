"""Operators' endpoints: /healthz and the local media folder."""
from __future__ import annotations

from flask import Blueprint, abort, send_file
from kombu import Connection
from sqlalchemy import text

from app.services import services

blp = Blueprint("health", __name__)


def _check(check) -> str:
    try:
        check()
        return "ok"
    except Exception as error:  # a health check reports, it never raises
        return f"down: {type(error).__name__}"


def _on(enabled: bool) -> str:
    return "on" if enabled else "off"


def _database():
    with services.db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _broker():
    with Connection(services.settings.broker_url, connect_timeout=3) as connection:
        connection.ensure_connection(max_retries=1)


@blp.get("/healthz")
def healthz():
    """200 with each component's state when all are up, 503 otherwise."""
    components = {
        "database": _check(_database),
        "redis": _check(services.redis.ping),
        "broker": _check(_broker),
        "storage": _check(services.storage.check),
        "cache": _check(services.cache.check),
    }
    code = 200 if all(state == "ok" for state in components.values()) else 503
    # What is switched on by its settings: off is healthy (APNS_*, TWITTER_*, FACEBOOK_* unset).
    features = {"push": _on(services.push.enabled),
                "sharing": {network: _on(services.sharing.enabled(network)) for network in ("twitter", "facebook")}}
    body = {"meta": {"code": code}, "data": {**components, **features}}
    if code != 200:
        body["meta"].update(error_type="APIServiceUnavailable", error_message="a component is down")
    return body, code


# merge_slashes=False: "//" answers 404 here, not a redirect to a path that might be served.
@blp.get("/media/<path:key>", merge_slashes=False)
def media(key: str):
    """Serves the local storage folder (the embedded default; S3 has a CDN)."""
    # Originals keep the uploader's EXIF and GPS: only derivatives and profile
    # pictures are served, as images (app.media.storage.served_type).
    found = services.storage.served_file(key) if services.settings.storage_backend == "local" else None
    if found is None:
        abort(404)
    path, content_type = found
    return send_file(path, mimetype=content_type, max_age=31536000)
