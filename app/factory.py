"""Shutter's Flask application factory (app.create_app calls it)."""
from __future__ import annotations

from flask import Flask, g, request
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from app.api import docs, formats
from app.api.common import register_media_error_handlers
from app.cli import shutter as shutter_commands
from app.config import Settings
from app.errors import http_error_response, register_error_handlers
from app.extensions import limiter
from app.platform.jsonprovider import OrjsonProvider
from app.platform.logging import (REQUEST_ID_HEADER, bind_request_id, configure_logging, connect_celery_logging,
                                  current_request_id, init_sentry, request_id_from, reset_request_id)
from app.platform.metrics import ServiceGauges, init_metrics
from app.services import Services


class ShutterApi(Api):
    """flask-smorest, with errors in v1's envelope instead of its own shape."""

    ERROR_SCHEMA = docs.ErrorEnvelopeSchema  # what /docs says every error response holds

    def handle_http_exception(self, error):
        return http_error_response(error)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    configure_logging(log_format=settings.log_format)
    connect_celery_logging(settings.log_format)
    if settings.sentry_dsn:
        init_sentry(settings.sentry_dsn)

    app = Flask(__name__, static_folder=None)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        API_TITLE="Shutter",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="docs",
        RATELIMIT_STORAGE_URI=settings.redis_url,
        RATELIMIT_ENABLED=settings.rate_limits_enabled,
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_KEY_PREFIX="ratelimit",
    )
    if settings.trusted_proxy_hops:
        # The client's address from X-Forwarded-For, as the trusted proxies saw it: the rate
        # limits key on it. With no proxy trusted the header is anyone's to forge.
        # Only X-Forwarded-For: a proxy that does not set X-Forwarded-Host would pass a forged one on.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops, x_proto=0, x_host=0)
    app.json = OrjsonProvider(app)
    app.extensions["shutter"] = Services(settings, flask_app=app)
    formats.init_app(app)  # `.json` paths and Content-Type-less bodies, as v1 took them

    api = ShutterApi(app, spec_kwargs={"info": {"description": "Instagram API v1, plus uploads and the rest"}})
    docs.register(api)
    limiter.init_app(app)
    # Imported here: their names (media, feeds) would shadow the domain packages in app's namespace.
    from app.api import (browse, devices, engagement, feeds, health, linked, media, oauth, relationships, search,
                         subscriptions, users)

    for area in (oauth, users, relationships, media, feeds, engagement, browse, search, subscriptions, devices,
                 linked):
        api.register_blueprint(area.blp)
    app.register_blueprint(health.blp)
    app.cli.add_command(shutter_commands)  # flask --app wsgi shutter …
    register_error_handlers(app)
    register_media_error_handlers(app)
    search.register_search_error_handlers(app)
    init_metrics(app, ServiceGauges(app.extensions["shutter"]))  # queue depths, outbox backlog: read when scraped

    @app.before_request
    def take_request_id():
        # On every log line of the request and of the tasks it enqueues (app/platform/logging.py).
        g.request_id_token = bind_request_id(request_id_from(request.headers.get(REQUEST_ID_HEADER)))

    @app.after_request
    def no_sniffing(response):
        # Browsers must not run a served file as HTML or script, whatever its bytes look like.
        response.headers["X-Content-Type-Options"] = "nosniff"
        if current_request_id():
            response.headers[REQUEST_ID_HEADER] = current_request_id()
        return response

    @app.teardown_request
    def drop_request_id(_error):
        token = g.pop("request_id_token", None)
        if token is not None:
            try:
                reset_request_id(token)
            except ValueError:  # set in another context (a test client's nested request)
                bind_request_id(None)

    @app.teardown_appcontext
    def close_session(_error):
        session = g.pop("db_session", None)
        if session is not None:
            session.close()

    return app
