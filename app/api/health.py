"""Operators' endpoints: /healthz, /readyz and the local media folder.

    /healthz          cheap, for load balancers: each component's state, checked at
                      most every HEALTH_CACHE_SECONDS per process (a busy balancer's
                      probes reuse the last answer)
    /healthz?deep=1   (= /readyz) for external checks: every component checked now,
                      and the work that waits: messages per queue against
                      HEALTH_MAX_QUEUE_DEPTH, the oldest undelivered outbox row
                      against HEALTH_MAX_OUTBOX_AGE_SECONDS
"""
from __future__ import annotations

import threading
import time

from flask import Blueprint, abort, current_app, request, send_file
from kombu import Connection
from sqlalchemy import text

from app.platform import outbox
from app.platform.queues import queue_depths
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


def _push() -> str:
    try:
        return _on(services.push.enabled)
    except (OSError, ValueError) as error:  # APNS_KEY_FILE missing, unreadable or not a key: said, not raised
        return f"down: {type(error).__name__}"


def _database():
    with services.db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _broker():
    with Connection(services.settings.broker_url, connect_timeout=3) as connection:
        connection.ensure_connection(max_retries=1)


# States that are healthy: "ok", and a feature's "off"/"on" (push; sharing's, per network).
HEALTHY = {"ok", "off", "on"}
_cached_lock = threading.Lock()


def component_states() -> dict[str, str]:
    return {
        "database": _check(_database),
        "redis": _check(services.redis.ping),
        "broker": _check(_broker),
        "storage": _check(services.storage.check),
        "cache": _check(services.cache.check),
        # What its settings switch on: "off" is healthy (APNS_*, TWITTER_*, FACEBOOK_* unset).
        "push": _push(),
        "sharing": {network: _on(services.sharing.enabled(network)) for network in ("twitter", "facebook")},
    }


def _cached_states() -> dict[str, str]:
    """The component states of at most HEALTH_CACHE_SECONDS ago, this process's."""
    cache = current_app.extensions.setdefault("shutter.health", {})
    with _cached_lock:  # one probe refreshes; the others wait for it, not check again
        states = cache.get("states")
        # A failing answer is kept for a second only: a component that comes back is seen at once
        # (scripts/run.py polls until 200), and a sick node's probes still cost one check a second.
        keep = services.settings.health_cache_seconds if states and _healthy(states) else 1
        if time.monotonic() - cache.get("at", float("-inf")) >= min(keep, services.settings.health_cache_seconds):
            cache.update(states=component_states(), at=time.monotonic())
        return dict(cache["states"])


def _healthy(states: dict) -> bool:
    return all(state in HEALTHY for state in states.values() if isinstance(state, str))


def _backlog(states: dict[str, str]) -> None:
    """The deep check's additions: queue depths and the outbox's oldest undelivered row."""
    settings = services.settings
    try:
        depths = queue_depths(services.celery)
        over = {name: depth for name, depth in depths.items() if depth > settings.health_max_queue_depth}
        states["queues"] = (f"backlog: {over} > {settings.health_max_queue_depth}" if over
                            else "ok")
        states["queue_depths"] = depths
    except Exception as error:  # noqa: BLE001 - a health check reports, it never raises
        states["queues"] = f"down: {type(error).__name__}"
    try:
        with services.db.read_session() as session:
            age = outbox.undelivered_age(session)
        seconds = 0 if age is None else int(age.total_seconds())
        states["outbox"] = (f"behind: oldest undelivered row {seconds}s > {settings.health_max_outbox_age_seconds}s"
                            if seconds > settings.health_max_outbox_age_seconds else "ok")
    except Exception as error:  # noqa: BLE001
        states["outbox"] = f"down: {type(error).__name__}"


def _answer(states: dict) -> tuple[dict, int]:
    failing = [name for name, state in states.items() if isinstance(state, str) and state not in HEALTHY]
    code = 503 if failing else 200
    body = {"meta": {"code": code}, "data": states}
    if failing:
        body["meta"].update(error_type="APIServiceUnavailable", error_message=f"not healthy: {', '.join(failing)}")
    return body, code


@blp.get("/healthz")
def healthz():
    """200 with each component's state when all are up, 503 otherwise; `?deep=1`: see /readyz."""
    if request.args.get("deep", "").lower() in {"1", "true", "yes"}:
        return readyz()
    return _answer(_cached_states())


@blp.get("/readyz")
def readyz():
    """Every component checked now, plus the queues' depths and the outbox's age, against thresholds."""
    states: dict = component_states()
    _backlog(states)
    return _answer(states)


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
