"""The v1 error envelope, for every error the API can answer with.

Errors are `{"meta": {"code", "error_type", "error_message"}}` with the same
HTTP status: never an HTML page, never a traceback. Under /oauth/ the three
fields are repeated at the top level, as v1's OAuth errors had them.
"""
from __future__ import annotations

import logging

from flask import Flask, has_request_context, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    code = 400
    error_type = "APIError"

    def __init__(self, message: str, *, code: int | None = None, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if error_type is not None:
            self.error_type = error_type


class InvalidParameters(APIError):
    error_type = "APIInvalidParametersError"


class NotFound(APIError):
    code = 404
    error_type = "APINotFoundError"


class NotAllowed(APIError):
    """The viewer may not see or do this (private account, block, not the owner)."""

    code = 400
    error_type = "APINotAllowedError"


class Conflict(APIError):
    code = 409
    error_type = "APIDuplicateError"


class ServiceUnavailable(APIError):
    """A component the request needs is down (as /healthz says): retry later."""

    code = 503
    error_type = "APIServiceUnavailable"


class OAuthParameterError(APIError):
    error_type = "OAuthParameterException"


class OAuthAccessTokenError(APIError):
    error_type = "OAuthAccessTokenException"


class OAuthPermissionsError(APIError):
    error_type = "OAuthPermissionsException"


class OAuthClientError(APIError):
    error_type = "OAuthClientException"


class ForbiddenSignature(APIError):
    code = 403
    error_type = "OAuthForbiddenException"


# HTTP errors raised by Flask/Werkzeug itself, in v1's vocabulary.
_HTTP_ERROR_TYPES = {
    400: "APIInvalidParametersError",
    401: "OAuthParameterException",
    404: "APINotFoundError",
    405: "APIMethodNotAllowedError",
    413: "APIRequestTooLargeError",
    415: "APIUnsupportedMediaType",
    429: "OAuthRateLimitException",
}


def error_response(code: int, error_type: str, message: str):
    body = {"meta": {"code": code, "error_type": error_type, "error_message": message}}
    if has_request_context() and request.path.startswith("/oauth/"):
        # v1's OAuth endpoints answered errors at the top level: the official client reads
        # `error_message` there (python-instagram oauth2.py), so they carry both.
        body.update(body["meta"])
    response = jsonify(body)
    response.status_code = code
    return response


def http_error_response(error: HTTPException):
    code = error.code or 500
    messages = (getattr(error, "data", None) or {}).get("messages")
    message = _describe(messages) if messages else (error.description or error.name)
    if code == 429:
        message = f"Rate limit exceeded ({error.description})"
    response = error_response(code, _HTTP_ERROR_TYPES.get(code, "APIError"), message)
    for name, value in (error.get_headers() if hasattr(error, "get_headers") else []):
        if name.lower() in {"allow", "retry-after", "www-authenticate"}:
            response.headers[name] = value
    return response


def _describe(messages) -> str:
    """webargs' {location: {field: [msg]}} as one readable line."""
    parts = []
    for fields in messages.values():
        if isinstance(fields, dict):
            for field, errors in fields.items():
                text = "; ".join(map(str, errors)) if isinstance(errors, list) else str(errors)
                parts.append(f"{field}: {text}")
        else:
            parts.append(str(fields))
    return ", ".join(parts) or "Invalid parameters"


def register_error_handlers(app: Flask) -> None:
    """The envelope for API errors, HTTP errors and anything unexpected (the
    media errors' handlers are app.api.common.register_media_error_handlers)."""
    @app.errorhandler(APIError)
    def handle_api_error(error: APIError):
        return error_response(error.code, error.error_type, error.message)

    @app.errorhandler(HTTPException)
    def handle_http_error(error: HTTPException):
        return http_error_response(error)

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception):
        # Logged (and sent to Sentry) with its traceback; the client sees none.
        log.exception("unhandled error")
        return error_response(500, "APIError", "Internal server error")
