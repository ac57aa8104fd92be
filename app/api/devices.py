"""Push: the devices a user's notifications go to, and which kinds are on (additions to v1, API.md)."""
from __future__ import annotations

import marshmallow as ma

from app.api.common import Blueprint, Schema, current_user, db, ok, require_token
from app.api.docs import errors, success
from app.push.service import ENVIRONMENTS, KINDS, TOKEN, TOPIC, device_json
from app.services import services

blp = Blueprint("devices", __name__, url_prefix="/v1", description="Push notifications: devices and preferences")


class DeviceArgs(Schema):
    token = ma.fields.String(required=True, validate=ma.validate.Regexp(
        TOKEN, error="an APNs device token: 64 to 200 hexadecimal characters"))
    environment = ma.fields.String(load_default="production", validate=ma.validate.OneOf(ENVIRONMENTS))
    topic = ma.fields.String(load_default=None, validate=ma.validate.Regexp(
        TOPIC, error="an app's bundle id, e.g. com.example.shutter"))


class PreferenceArgs(Schema):
    """Each kind on (true) or off (false); those not sent stay as they are."""

    like = ma.fields.Boolean(load_default=None)
    comment = ma.fields.Boolean(load_default=None)
    mention = ma.fields.Boolean(load_default=None)
    follow = ma.fields.Boolean(load_default=None)
    follow_request = ma.fields.Boolean(load_default=None)
    follow_accepted = ma.fields.Boolean(load_default=None)


assert set(PreferenceArgs._declared_fields) == set(KINDS)


@blp.route("/users/self/devices", methods=["POST"])
@success(blp, 201, "The device, registered to you (a token registered by someone else moves to you)")
@require_token()
@blp.arguments(DeviceArgs(), location="form")
def register_device(args):
    """Register an APNs device token for your push notifications (environment sandbox|production, topic)."""
    device = services.push.register_device(db(), current_user().id, args["token"], args["environment"],
                                           args["topic"])
    return ok(device_json(device), code=201)


@blp.route("/users/self/devices", methods=["GET"])
@success(blp, 200, "Your devices")
@require_token()
def list_devices():
    """The devices your push notifications go to."""
    return ok([device_json(d) for d in services.push.devices_of(db(), current_user().id)])


@blp.route("/users/self/devices/<token>", methods=["DELETE"])
@success(blp, 200, "Unregistered: data null")
@errors(404)
@require_token()
def unregister_device(token):
    """Stop push notifications to one of your devices."""
    services.push.remove_device(db(), current_user().id, token)
    return ok(None)


@blp.route("/users/self/notifications", methods=["GET"])
@success(blp, 200, "Each kind of push notification, on (true) or off (false)")
@require_token()
def get_preferences():
    """Which kinds of push notification you get."""
    return ok(services.push.preferences(db(), current_user().id))


@blp.route("/users/self/notifications", methods=["POST"])
@success(blp, 200, "Each kind of push notification after the change")
@require_token()
@blp.arguments(PreferenceArgs(), location="form")
def set_preferences(args):
    """Switch kinds of push notification on or off: like, comment, mention, follow, follow_request,
    follow_accepted (true|false)."""
    changes = {kind: on for kind, on in args.items() if on is not None}
    return ok(services.push.set_preferences(db(), current_user().id, changes))
