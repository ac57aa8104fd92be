"""Linked Twitter and Facebook accounts (API.md, Additions): list, connect, the provider's
callback, unlink. The flow itself is app/sharing/linking.py's.

connect answers 302 to the provider's authorize URL, and carries the same URL in its JSON
body (data.authorize_url) for an app that opens it itself (in a web view, a browser):
an HTTP client that does not follow redirects reads either. The callback is opened by the
user's browser, without an access token: the single-use `state` says whose flow it is.
"""
from __future__ import annotations

import marshmallow as ma
from flask import jsonify, request

from app.api.common import Blueprint, Schema, current_user, db, ok, require_token
from app.api.docs import NO_AUTH, errors, success
from app.services import services
from app.sharing.linking import linked_json

blp = Blueprint("linked", __name__, url_prefix="/v1", description="Linked Twitter and Facebook accounts")


class CallbackArgs(Schema):
    """What the providers send back (all optional: a denial sends little)."""

    state = ma.fields.String(load_default=None, metadata={"description": "the flow's single-use state"})
    code = ma.fields.String(load_default=None, metadata={"description": "Facebook (OAuth 2)"})
    oauth_token = ma.fields.String(load_default=None, metadata={"description": "Twitter (OAuth 1.0a)"})
    oauth_verifier = ma.fields.String(load_default=None, metadata={"description": "Twitter (OAuth 1.0a)"})
    denied = ma.fields.String(load_default=None, metadata={"description": "Twitter: the user said no"})
    error = ma.fields.String(load_default=None, metadata={"description": "Facebook: the user said no"})


@blp.route("/users/self/linked", methods=["GET"])
@success(blp, 200, "The user's linked accounts: network, remote_user_id, screen_name, linked_time")
@require_token()
def list_linked():
    """The Twitter and Facebook accounts the user shares to."""
    return ok([linked_json(account) for account in services.linked.accounts(db(), current_user().id)])


@blp.route("/users/self/linked/<network>/connect", methods=["GET"])
@success(blp, 302, "To the provider's authorize URL (also in data.authorize_url)",
         headers={"Location": {"description": "the provider's authorize URL", "schema": {"type": "string"}}})
@errors(404, 503)
@require_token("publish")
def connect_linked(network: str):
    """Start linking twitter (OAuth 1.0a) or facebook (OAuth 2): 400 when this server has no app for it."""
    url = services.linked.connect(current_user().id, network)
    body, code = ok({"authorize_url": url}, code=302)
    response = jsonify(body)
    response.status_code = code
    response.headers["Location"] = url
    return response


@blp.route("/users/self/linked/<network>/callback", methods=["GET"])
@success(blp, 200, "Linked: the account (network, remote_user_id, screen_name, linked_time)")
@errors(400, 404, 503)
@blp.doc(security=NO_AUTH)  # the browser comes back from the provider: the state says whose flow it is
@blp.arguments(CallbackArgs(), location="query")
def linked_callback(args, network: str):
    """Where the provider sends the user back; bad, expired or replayed state: 400."""
    account = services.linked.callback(db(), network, dict(request.args))
    return ok(linked_json(account))


@blp.route("/users/self/linked/<network>", methods=["DELETE"])
@success(blp, 200, "Unlinked (or was not linked): data null")
@errors(404)
@require_token("publish")
def unlink(network: str):
    """Forget the linked account's tokens: nothing is shared there any more."""
    services.linked.unlink(db(), current_user().id, network)
    return ok()
