"""OAuth 2 as v1 had it, at /oauth (outside /v1), and API client registration.

Departure from v1, said in the README: /oauth/authorize has no login page
(this is an API backend); the user authenticates to it with HTTP Basic and is
redirected straight back to the client with a code or a token.
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import timedelta
from urllib.parse import unquote_plus, urlencode

import marshmallow as ma
from flask import redirect, request
from sqlalchemy import func, select, update

from app.accounts.auth import (
    SCOPES,
    authenticate_client,
    new_client_credentials,
    parse_scopes,
    same_redirect_uri,
    sha256,
)
from app.api.common import Blueprint, Schema, db, ok
from app.api.docs import BASIC_AUTH, NO_AUTH, TokenSchema, errors, success
from app.api.users import USERNAME
from app.errors import APIError, InvalidParameters, OAuthClientError, OAuthParameterError
from app.extensions import limiter
from app.services import services
from models import AuthorizationCode, Client, User, begin_read, begin_write, utcnow

blp = Blueprint("oauth", __name__, description="OAuth 2 tokens and API clients")

CODE_LIFETIME = timedelta(minutes=10)


def _login_limit() -> str:
    return services.settings.login_rate_limit


class TokenArgs(Schema):
    grant_type = ma.fields.String(required=True, validate=ma.validate.OneOf(["password", "authorization_code"]))
    client_id = ma.fields.String(required=True)
    client_secret = ma.fields.String(required=True)
    username = ma.fields.String()
    password = ma.fields.String()
    code = ma.fields.String()
    redirect_uri = ma.fields.String()
    scope = ma.fields.String(load_default="basic")  # space-separated, as the official client joins them

    @ma.pre_load
    def _none_is_unset(self, data, **_kwargs):
        # python-instagram sends an unset redirect_uri as the text "None" (on every grant):
        # absent, so the password grant ignores it and a code exchange asks for a real one.
        if isinstance(data, Mapping) and data.get("redirect_uri") == "None":
            data = {key: value for key, value in data.items() if key != "redirect_uri"}
        return data


class AuthorizeArgs(Schema):
    client_id = ma.fields.String(required=True)
    # the registered one is at most 500 (ClientArgs), and a code stores what was given
    redirect_uri = ma.fields.String(required=True, validate=ma.validate.Length(max=500))
    response_type = ma.fields.String(load_default="code", validate=ma.validate.OneOf(["code", "token"]))
    scope = ma.fields.String(load_default="basic")
    # handed back untouched with the redirect (RFC 6749 §4.1.2): the client's CSRF check
    state = ma.fields.String(load_default=None, validate=ma.validate.Length(max=1000))


class RevokeArgs(Schema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    # RFC 7009 §2.1: a hint the server may ignore; access tokens are the only kind here
    token_type_hint = ma.fields.String(load_default=None)
    client_id = ma.fields.String(load_default=None)
    client_secret = ma.fields.String(load_default=None)


class ClientArgs(Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    redirect_uri = ma.fields.Url(required=True, require_tld=False, validate=ma.validate.Length(max=500))
    enforce_signed_requests = ma.fields.Boolean(load_default=False)


class OAuthError(APIError):
    error_type = "OAuthException"


def _user_by_credentials(username: str | None, password: str | None) -> User | None:
    if not username or not password:
        return None
    # A name that cannot be a username matches no one, without a query (HTTP Basic reaches
    # here unvalidated, and PostgreSQL refuses a NUL in a parameter).
    user = None
    if USERNAME.match(username):
        user = db().scalar(select(User).where(User.username_key == username.lower()))
    # verify even when there is no such user, so timing doesn't reveal usernames
    return user if services.passwords.verify(user.password_hash if user else None, password) else None


def _basic_auth_user() -> User:
    auth = request.authorization
    user = _user_by_credentials(auth.username, auth.password) if auth and auth.type == "basic" else None
    if user is None:
        raise APIError("Valid HTTP Basic credentials (username, password) are required.",
                       code=401, error_type="OAuthParameterException")
    return user


def _scopes(raw: str) -> list[str]:
    scopes = parse_scopes(raw)
    if scopes is None:
        raise OAuthParameterError(f"Invalid scope: use {', '.join(SCOPES)}.")
    return scopes


def _with_params(uri: str, params: dict, *, fragment: bool = False) -> str:
    """`uri` with `params` (None values left out) in its query or its fragment."""
    encoded = urlencode({key: value for key, value in params.items() if value is not None})
    if fragment:
        return f"{uri}#{encoded}"
    return f"{uri}{'&' if '?' in uri else '?'}{encoded}"


@blp.route("/oauth/access_token", methods=["POST"])
@success(blp, 200, "The access token and its user", schema=TokenSchema)
@errors(429)
@blp.doc(security=NO_AUTH)  # the client authenticates with client_id and client_secret in the form
@limiter.limit(_login_limit)
@blp.arguments(TokenArgs(), location="form")
def access_token(args):
    """Exchange a password (xAuth) or an authorization code for an access token."""
    session = db()
    begin_read(session)  # argon2 runs without SQLite's write lock: begin_write comes after it
    client = authenticate_client(session, args["client_id"], args["client_secret"])
    if client is None:
        raise OAuthClientError("Invalid client_id or client_secret.")
    if args["grant_type"] == "password":
        scopes = _scopes(args["scope"])
        user = _user_by_credentials(args.get("username"), args.get("password"))
        if user is None:
            raise OAuthError("The username or password you entered is incorrect.")
        begin_write(session)
    else:
        if not args.get("code") or not args.get("redirect_uri"):
            raise OAuthParameterError("authorization_code needs code and redirect_uri.")
        begin_write(session)
        # Claim the code atomically: a code is good for one token, however many requests race.
        claimed = session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == sha256(args["code"]),
                   AuthorizationCode.client_pk == client.id,
                   AuthorizationCode.redirect_uri == args["redirect_uri"],
                   AuthorizationCode.used_at.is_(None),
                   AuthorizationCode.expires_at > utcnow())
            .values(used_at=utcnow())
            .returning(AuthorizationCode.user_id, AuthorizationCode.scopes)
        ).first()
        if claimed is None:
            raise OAuthError("Invalid, expired or already used authorization code.")
        user = session.get(User, claimed.user_id)
        scopes = claimed.scopes.split()
    token = services.tokens.issue(session, user.id, client, scopes)
    session.commit()
    return {"access_token": token, "user": services.serializer.user_summary(user), "meta": {"code": 200}}


@blp.route("/oauth/authorize", methods=["GET"])
@success(blp, 302, "Back to redirect_uri with `?code=` (response_type=code) or `#access_token=` (token)",
         schema=None, headers={"Location": {"description": "redirect_uri with the code or the token",
                                            "schema": {"type": "string"}}})
@errors(401, 429)
@blp.doc(security=BASIC_AUTH)
@limiter.limit(_login_limit)
@blp.arguments(AuthorizeArgs(), location="query")
def authorize(args):
    """The user (HTTP Basic) authorizes a client; redirects with ?code= or #access_token=."""
    session = db()
    client = session.scalar(select(Client).where(Client.client_id == args["client_id"]))
    if client is None:
        raise OAuthClientError("Invalid client_id.")
    if not same_redirect_uri(client.redirect_uri, args["redirect_uri"]):
        raise OAuthParameterError("redirect_uri does not match the client's registered redirect_uri.")
    scopes = _scopes(args["scope"])
    user = _basic_auth_user()
    begin_write(session)  # a GET that writes (its session began DEFERRED), after the password check
    # Back to the registered spelling: the given one is equal once normalised, and a
    # browser's URL parser then has nothing to read differently from ours.
    if args["response_type"] == "token":
        token = services.tokens.issue(session, user.id, client, scopes)
        session.commit()
        return redirect(_with_params(client.redirect_uri, {"access_token": token, "state": args["state"]},
                                     fragment=True))
    code = secrets.token_urlsafe(24)
    session.add(AuthorizationCode(
        code_hash=sha256(code), user_id=user.id, client_pk=client.id, redirect_uri=args["redirect_uri"],
        scopes=" ".join(scopes), expires_at=utcnow() + CODE_LIFETIME,
    ))
    session.commit()
    return redirect(_with_params(client.redirect_uri, {"code": code, "state": args["state"]}))


def _revoking_client(args) -> Client:
    """The client of a revocation: HTTP Basic (client_id:client_secret, form-encoded, RFC 6749
    §2.3.1) or the two form fields. A bad one is 401 with Basic (§5.2), 400 otherwise."""
    auth = request.authorization
    if auth is not None and auth.type == "basic":
        client = authenticate_client(db(), unquote_plus(auth.username or ""), unquote_plus(auth.password or ""))
        if client is None:
            raise OAuthClientError("Invalid client credentials.", code=401)
        return client
    if not args["client_id"] or not args["client_secret"]:
        raise OAuthClientError("Authenticate the client: HTTP Basic, or client_id and client_secret.")
    client = authenticate_client(db(), args["client_id"], args["client_secret"])
    if client is None:
        raise OAuthClientError("Invalid client_id or client_secret.")
    return client


@blp.route("/oauth/revoke", methods=["POST"])
@success(blp, 200, "Revoked, or no such token (RFC 7009): data null")
@errors(401, 429)
@blp.doc(security=NO_AUTH)  # the client: client_id and client_secret in the form, or HTTP Basic
@limiter.limit(_login_limit)
@blp.arguments(RevokeArgs(), location="form")
def revoke(args):
    """Revoke one of the client's access tokens (RFC 7009); an unknown token is no error."""
    session = db()
    client = _revoking_client(args)
    if not services.tokens.revoke(session, client, args["token"]):
        raise OAuthClientError("This token was not issued to this client.")
    session.commit()
    return ok(None)


@blp.route("/v1/clients", methods=["POST"])
@success(blp, 201, "Created: client_id, client_secret, name, redirect_uri, enforce_signed_requests")
@errors(401, 429)
@blp.doc(security=BASIC_AUTH)
@limiter.limit(_login_limit)
@blp.arguments(ClientArgs(), location="form")
def register_client(args):
    """Register an API client (an addition), as its owner (HTTP Basic)."""
    session = db()
    begin_read(session)
    owner = _basic_auth_user()
    begin_write(session)  # after the password check: argon2 never runs under SQLite's write lock
    max_clients = 50
    if session.scalar(select(func.count()).select_from(Client).where(Client.owner_id == owner.id)) >= max_clients:
        raise InvalidParameters(f"An account may register at most {max_clients} clients.")
    client_id, client_secret = new_client_credentials()
    client = Client(client_id=client_id, client_secret=client_secret, owner_id=owner.id, **args)
    session.add(client)
    session.commit()
    return ok({
        "client_id": client_id, "client_secret": client_secret, "name": client.name,
        "redirect_uri": client.redirect_uri, "enforce_signed_requests": client.enforce_signed_requests,
    }, code=201)
