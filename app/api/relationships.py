"""Relationships: v1's GET/POST /users/{id}/relationship."""
from __future__ import annotations

import marshmallow as ma
from flask import g

from app.api.common import (Blueprint, Schema, authenticate, current_user, db, ok, ok_rendered, request_token,
                            require_token, user_or_404, warm_viewer)
from app.api.docs import errors, success, token_auth
from app.engagement import activity
from app.errors import InvalidParameters, NotFound
from app.feeds.rendered import Rendered
from app.services import services
from app.social import relationships as social
from app.social import visibility

blp = Blueprint("relationships", __name__, url_prefix="/v1", description="Follows, requests and blocks")


class RelationshipArgs(Schema):
    action = ma.fields.String(required=True, validate=ma.validate.OneOf(social.ACTIONS))


def _target(user_id: str, *, hide_if_blocked: bool = True):
    target = None if user_id == "self" else user_or_404(user_id)
    if target is None or target.id == current_user().id:
        raise InvalidParameters("A relationship needs another user's id, not self.")
    if hide_if_blocked and visibility.is_blocked(db(), target.id, current_user().id):
        raise NotFound("this user does not exist")
    return target


@blp.route("/users/<user_id>/relationship", methods=["GET"])
@success(blp, 200, "outgoing_status, incoming_status, target_user_is_private")
@errors(404)
@token_auth()  # it authenticates itself (the warm read checks the token with the graph)
def get_relationship(user_id):
    """How you and this user relate."""
    raw_token = request_token()  # a missing token is the first thing said
    warm = services.profiles.relationship(services.tokens.key(raw_token), user_id)
    if isinstance(warm, Rendered):
        warm_viewer(warm)
        return ok_rendered(warm.data)
    authenticate()
    return ok(services.profiles.relationship_object(db(), g.token.user_id, warm, _target(user_id)))


@blp.route("/users/<user_id>/relationship", methods=["POST"])
@success(blp, 200, "The relationship after the action")
@errors(404)
@require_token("relationships")
@blp.arguments(RelationshipArgs(), location="form")
def change_relationship(args, user_id):
    """follow | unfollow | block | unblock | approve | ignore."""
    session = db()
    # Whom they blocked still answers here: follow says APINotAllowedError, block back works.
    target = _target(user_id, hide_if_blocked=False)
    change = social.apply(session, current_user(), target, args["action"])
    activity.follow_changed(session, current_user().id, target.id, change)
    services.feeds.apply_change(session, change)
    session.commit()
    return ok(social.relationship(session, current_user().id, target))
