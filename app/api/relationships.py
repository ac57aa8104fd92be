"""Relationships: v1's GET/POST /users/{id}/relationship."""
from __future__ import annotations

import marshmallow as ma
from flask_smorest import Blueprint

from app import social
from app.api.common import Schema, current_user, db, ok, require_token, user_or_404
from app.errors import InvalidParameters, NotFound

blp = Blueprint("relationships", __name__, url_prefix="/v1", description="Follows, requests and blocks")


class RelationshipArgs(Schema):
    action = ma.fields.String(required=True, validate=ma.validate.OneOf(social.ACTIONS))


def _target(user_id: str):
    if user_id == "self":
        raise InvalidParameters("A relationship needs another user's id, not self.")
    target = user_or_404(user_id)
    if social.is_blocked(db(), target.id, current_user().id):
        raise NotFound("this user does not exist")
    return target


@blp.route("/users/<user_id>/relationship", methods=["GET"])
@require_token()
def get_relationship(user_id):
    """How you and this user relate."""
    return ok(social.relationship(db(), current_user().id, _target(user_id)))


@blp.route("/users/<user_id>/relationship", methods=["POST"])
@require_token("relationships")
@blp.arguments(RelationshipArgs, location="form")
def change_relationship(args, user_id):
    """follow | unfollow | block | unblock | approve | ignore."""
    session = db()
    target = _target(user_id)
    social.apply(session, current_user(), target, args["action"])
    session.commit()
    return ok(social.relationship(session, current_user().id, target))
