"""What the OpenAPI document (GET /docs) says that flask-smorest cannot infer from the
request schemas: how a request authenticates, the multipart file fields, and the
responses in v1's envelope. Documentation only: nothing here parses or answers a request.
"""
from __future__ import annotations

import http

import marshmallow as ma
from flask_smorest import Blueprint

from app.accounts.auth import SCOPES

SCOPE_DESCRIPTIONS = {
    "basic": "read a user's profile, media, feed and lists, and nothing else (every token has it)",
    "comments": "post and delete comments",
    "relationships": "follow, unfollow, block, approve and ignore",
    "likes": "like and unlike media",
    "publish": "upload and delete your media, edit your profile (an addition to v1)",
}
assert set(SCOPE_DESCRIPTIONS) == set(SCOPES)

# The names of app.api.common.require_token's alternatives, any one of which is enough.
SECURITY_SCHEMES = {
    "oauth2": {
        "type": "oauth2",
        "description": "An OAuth 2 access token, sent as `Authorization: Bearer <token>`. It carries the "
                       "scopes it was issued with; a route that needs a scope the token lacks answers 400 "
                       "OAuthPermissionsException. A missing token answers 400 OAuthParameterException, "
                       "an invalid one 400 OAuthAccessTokenException; a client registered with "
                       "enforce_signed_requests must also send `sig` (403 OAuthForbiddenException). "
                       "The client revokes a token at POST /oauth/revoke (RFC 7009); a password change "
                       "(POST /v1/users/self with password and current_password) revokes every token "
                       "of the account.",
        "flows": {
            "password": {"tokenUrl": "/oauth/access_token", "scopes": SCOPE_DESCRIPTIONS},
            "authorizationCode": {"authorizationUrl": "/oauth/authorize", "tokenUrl": "/oauth/access_token",
                                  "scopes": SCOPE_DESCRIPTIONS},
            "implicit": {"authorizationUrl": "/oauth/authorize", "scopes": SCOPE_DESCRIPTIONS},
        },
    },
    "accessToken": {
        "type": "apiKey", "in": "query", "name": "access_token",
        "description": "The same OAuth 2 access token as the `access_token` query parameter (or, in a POST, "
                       "form field: OpenAPI has no form location for it). The scopes the operation lists "
                       "under oauth2 apply to it too.",
    },
    "bearerAuth": {
        "type": "http", "scheme": "bearer",
        "description": "The same OAuth 2 access token as `Authorization: Bearer <token>`, for clients that "
                       "do not run an OAuth flow themselves. The scopes listed under oauth2 apply.",
    },
    "clientId": {
        "type": "apiKey", "in": "query", "name": "client_id",
        "description": "An API client's client_id, with its client_secret: real-time subscriptions "
                       "authenticate the client, not a user, as v1's did (also accepted as form fields of a POST).",
    },
    "clientSecret": {
        "type": "apiKey", "in": "query", "name": "client_secret",
        "description": "The client_secret that goes with client_id (a wrong one answers 400 OAuthClientException).",
    },
    "basicAuth": {
        "type": "http", "scheme": "basic",
        "description": "The user's own username and password (HTTP Basic): registering an API client and "
                       "authorizing one at /oauth/authorize. Wrong or missing credentials answer 401.",
    },
}

NO_AUTH: list = []  # an explicit "none": sign-up and the token exchange take no credentials
BASIC_AUTH = [{"basicAuth": []}]
CLIENT_AUTH = [{"clientId": [], "clientSecret": []}]  # both together: the subscriptions' client credentials


def token_security(*scopes: str) -> list[dict]:
    """An access token with `scopes` (basic is implied), in any of the three places."""
    needed = ["basic", *(scope for scope in scopes if scope != "basic")]
    return [{"oauth2": needed}, {"accessToken": []}, {"bearerAuth": []}]


def token_auth(*scopes: str):
    """Document an operation that authenticates with an access token (app.api.common.authenticate):
    its security, and the 400 (missing or invalid token, missing scope) and 403 (bad `sig`) it answers."""

    def decorator(view):
        return errors(400, 403)(Blueprint.doc(security=token_security(*scopes))(view))

    return decorator


class MetaSchema(ma.Schema):
    code = ma.fields.Integer(required=True, metadata={"description": "the HTTP status, repeated"})


class EnvelopeSchema(ma.Schema):
    """v1's envelope around every answer (API.md, Conventions)."""

    meta = ma.fields.Nested(MetaSchema, required=True)
    data = ma.fields.Raw(allow_none=True, metadata={
        "description": "the route's object or list (User, Media, Comment, Tag, Location, relationship; "
                       "API.md, Objects), or null"})
    pagination = ma.fields.Dict(metadata={
        "description": "on lists: next_url and the next cursor (next_max_id, next_cursor, …) when there is more"})


class ErrorMetaSchema(ma.Schema):
    code = ma.fields.Integer(required=True, metadata={"description": "the HTTP status, repeated"})
    error_type = ma.fields.String(required=True, metadata={
        "description": "e.g. APIInvalidParametersError, APINotFoundError, OAuthParameterException, "
                       "OAuthAccessTokenException, OAuthPermissionsException"})
    error_message = ma.fields.String(required=True)


class ErrorEnvelopeSchema(ma.Schema):
    """Every 4xx/5xx answer: `{"meta": {"code", "error_type", "error_message"}}`, same HTTP status."""

    meta = ma.fields.Nested(ErrorMetaSchema, required=True)
    # /oauth/… only: v1's OAuth errors, which the official client reads at the top level
    code = ma.fields.Integer(metadata={"description": "on /oauth/ endpoints: meta.code, repeated"})
    error_type = ma.fields.String(metadata={"description": "on /oauth/ endpoints: meta.error_type, repeated"})
    error_message = ma.fields.String(metadata={"description": "on /oauth/ endpoints: meta.error_message, repeated"})


class TokenSchema(ma.Schema):
    """/oauth/access_token's answer: v1's two fields plus the envelope's meta."""

    access_token = ma.fields.String(required=True)
    user = ma.fields.Dict(required=True, metadata={"description": "the user's summary"})
    meta = ma.fields.Nested(MetaSchema, required=True)


def register(api) -> None:
    for name, scheme in SECURITY_SCHEMES.items():
        api.spec.components.security_scheme(name, scheme)


def success(blp: Blueprint, code: int, description: str, schema=EnvelopeSchema, **kwargs):
    """Document the answer of the normal flow. alt_response, not response: the views build
    their own envelopes (ok()), and @blp.response would re-serialize what they return."""
    return blp.alt_response(code, schema=schema, description=description, success=True, **kwargs)


def errors(*codes: int):
    """Document error statuses, each as flask-smorest's shared response of that status, whose
    schema is the error envelope (ShutterApi.ERROR_SCHEMA)."""
    return Blueprint.doc(responses={code: http.HTTPStatus(code).name for code in codes})


def multipart(schema):
    """Document a multipart/form-data body: `schema` is the form's request schema plus its Upload
    fields. flask-smorest documents one body location per operation and parses a form and its files
    separately (its docs: mixed multipart is not supported), so the file is declared here for the
    docs only and the view keeps reading request.files itself: its checks and messages are unchanged."""
    return Blueprint.doc(requestBody={"content": {"multipart/form-data": {"schema": schema}}})

