"""Real-time subscriptions (API.md), authenticated by the client's client_id and
client_secret: in the query string, as the official client sends them (or as form
fields of the POST). Answers are v1's envelope with meta.code 200, which the client
returns raw."""
from __future__ import annotations

import marshmallow as ma
from flask import request

from app.accounts.auth import authenticate_client
from app.api.common import Blueprint, Schema, db, ok, parse_id
from app.api.docs import CLIENT_AUTH, errors, success
from app.errors import OAuthClientError, OAuthParameterError
from app.realtime.subscriptions import ASPECTS, MAX_RADIUS_METERS, OBJECTS, NewSubscription, subscription_json
from app.services import services
from models import Client

blp = Blueprint("subscriptions", __name__, url_prefix="/v1", description="Real-time subscriptions")


class CreateArgs(Schema):
    object = ma.fields.String(required=True, validate=ma.validate.OneOf(OBJECTS))
    aspect = ma.fields.String(load_default="media", validate=ma.validate.OneOf(ASPECTS))
    callback_url = ma.fields.Url(required=True, require_tld=False, schemes={"http", "https"},
                                 validate=ma.validate.Length(max=500))
    verify_token = ma.fields.String(load_default="", validate=ma.validate.Length(max=200))
    object_id = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=100))
    lat = ma.fields.Float(load_default=None, allow_nan=False, validate=ma.validate.Range(min=-90, max=90))
    lng = ma.fields.Float(load_default=None, allow_nan=False, validate=ma.validate.Range(min=-180, max=180))
    radius = ma.fields.Integer(load_default=None, validate=ma.validate.Range(min=1, max=MAX_RADIUS_METERS))


class DeleteArgs(Schema):
    id = ma.fields.String(load_default=None)
    object = ma.fields.String(load_default=None, validate=ma.validate.OneOf(["all", *OBJECTS]))


def authenticated_client() -> Client:
    """The client of client_id and client_secret (query string, or the POST's form)."""
    client_id = request.args.get("client_id") or request.form.get("client_id")
    client_secret = request.args.get("client_secret") or request.form.get("client_secret")
    if not client_id or not client_secret:
        raise OAuthParameterError("Missing client_id or client_secret: subscriptions authenticate the client.")
    # A NUL matches no client, and PostgreSQL refuses it as a parameter: no query for it.
    client = None if "\x00" in client_id else authenticate_client(db(), client_id, client_secret)
    if client is None:
        raise OAuthClientError("Invalid client_id or client_secret.")
    return client


@blp.route("/subscriptions", methods=["POST"])
@success(blp, 200, "The subscription, stored once its callback echoed the hub.challenge")
@errors(400, 404)
@blp.doc(security=CLIENT_AUTH)
@blp.arguments(CreateArgs(), location="form")
def create_subscription(args):
    """Subscribe a callback to new media of the client's users, a tag, a location or an area."""
    subscription = services.subscriptions.create(db(), authenticated_client(), NewSubscription(**args))
    return ok(subscription_json(subscription))


@blp.route("/subscriptions", methods=["GET"])
@success(blp, 200, "The client's subscriptions (disabled ones are gone)")
@errors(400)
@blp.doc(security=CLIENT_AUTH)
def list_subscriptions():
    """The client's subscriptions."""
    subscriptions = services.subscriptions.subscriptions_of(db(), authenticated_client())
    return ok([subscription_json(s) for s in subscriptions])


@blp.route("/subscriptions", methods=["DELETE"])
@success(blp, 200, "Deleted: data null")
@errors(400, 404)
@blp.doc(security=CLIENT_AUTH)
@blp.arguments(DeleteArgs(), location="query")
def delete_subscriptions(args):
    """Delete one subscription (id) or all of a kind (object=all|user|tag|location|geography)."""
    client = authenticated_client()
    services.subscriptions.remove(db(), client, parse_id(args["id"]), args["object"])
    return ok(None)
