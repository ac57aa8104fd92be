"""Users: sign-up, profiles, search, and the lists of the social graph."""
from __future__ import annotations

import marshmallow as ma
from flask import g, request
from flask_smorest.fields import Upload

from app.accounts.auth import new_password_hash, set_password
from app.accounts.registration import USERNAME, AccountTaken, create_user
from app.api.common import (
    Blueprint,
    CursorArgs,
    Schema,
    authenticate,
    current_user,
    db,
    next_page,
    ok,
    ok_rendered,
    parse_id,
    request_token,
    require_token,
    token_first,
    user_or_404,
    warm_ids,
    warm_viewer,
)
from app.api.docs import NO_AUTH, errors, multipart, success, token_auth
from app.engagement import activity
from app.errors import APIError, Conflict, NotAllowed, NotFound
from app.extensions import limiter
from app.feeds.rendered import Miss, Rendered
from app.platform.aftercommit import after_commit
from app.platform.changes import owner_visibility_changed, profiles_changed, user_changed
from app.services import services
from app.social import relationships as social
from app.social import visibility
from models import User, begin_write

blp = Blueprint("users", __name__, url_prefix="/v1", description="Users and the social graph")



class SignupArgs(Schema):
    username = ma.fields.String(required=True, validate=ma.validate.Regexp(
        USERNAME, error="1–30 letters, digits, '.' or '_'"))
    password = ma.fields.String(required=True, validate=ma.validate.Length(min=8, max=128))
    email = ma.fields.Email(required=True, validate=ma.validate.Length(max=254))
    full_name = ma.fields.String(load_default="", validate=ma.validate.Length(max=100))

    @ma.validates("email")
    def _email_key_fits(self, value: str, **_kwargs) -> None:
        # email_key is the lower-cased address, and lower-casing can lengthen it ("İ" is two
        # characters lower-cased): past 254 PostgreSQL refuses the row.
        if len(value.lower()) > 254:
            raise ma.ValidationError("Longer than maximum length 254.")


class ProfileArgs(Schema):
    full_name = ma.fields.String(validate=ma.validate.Length(max=100))
    bio = ma.fields.String(validate=ma.validate.Length(max=150))
    website = ma.fields.Url(validate=ma.validate.Length(max=200), schemes={"http", "https"})
    is_private = ma.fields.Boolean()
    # A new password needs the current one, and revokes every token of the account (this one too).
    password = ma.fields.String(validate=ma.validate.Length(min=8, max=128))
    current_password = ma.fields.String(validate=ma.validate.Length(max=128))


class ProfileForm(ProfileArgs):
    """/docs only: the profile's multipart form (edit_profile reads the file from request.files)."""

    profile_picture = Upload(metadata={"description": "a new profile picture: JPEG, PNG, WebP or HEIC"})


class SearchArgs(Schema):
    q = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))


def _signup_limit() -> str:
    return services.settings.signup_rate_limit


@blp.route("/users", methods=["POST"])
@success(blp, 201, "Created: the new user (full object, with counts)")
@errors(409, 429)
@blp.doc(security=NO_AUTH)
@limiter.limit(_signup_limit, methods=["POST"])
@blp.arguments(SignupArgs(), location="form")
def signup(args):
    """Sign up (an addition to v1): username, password, email, full_name → 201 + user."""
    try:
        user = create_user(db(), services.passwords, args["username"], args["email"], args["password"],
                           full_name=args["full_name"])
    except AccountTaken as taken:
        raise Conflict(str(taken)) from None
    return ok(services.serializer.user_full(user), code=201)


@blp.route("/users/<user_id>", methods=["GET"])
@success(blp, 200, "The user (full object, with counts)")
@errors(404)
@token_auth()  # it authenticates itself (the warm read checks the token with the profile)
def get_user(user_id):
    """A user's full profile, with counts."""
    raw_token = request_token()  # a missing token is the first thing said
    base = services.serializer.url_base()
    warm = services.profiles.user(services.tokens.key(raw_token), user_id, base)
    if isinstance(warm, Rendered):
        warm_viewer(warm)
        return ok_rendered(warm.data)
    authenticate()
    user = user_or_404(user_id)
    if visibility.is_blocked(db(), user.id, g.token.user_id):
        raise NotFound("this user does not exist")
    return ok(services.profiles.user_full(db(), g.token.user_id, warm, user, base))


@blp.route("/users/self", methods=["POST"])
@success(blp, 200, "The edited profile (full object)")
@errors(413, 415)
@multipart(ProfileForm)
@require_token("publish")
@blp.arguments(ProfileArgs(), location="form")
def edit_profile(args):
    """Edit the profile (an addition): full_name, bio, website, is_private, profile_picture; a new
    `password` with `current_password` revokes every token of the account, this one included."""
    session = db()
    user = current_user()
    # The slow parts (argon2, decoding and storing a picture) with no transaction open: on
    # SQLite it would hold the write lock, on PostgreSQL a connection idle in transaction.
    session.commit()
    password_hash = _new_password_hash(user, args.pop("password", None), args.pop("current_password", None))
    picture = request.files.get("profile_picture")
    new_picture = services.profile_pictures.store(user.id, picture.read()) if picture is not None else None
    begin_write(session)
    if password_hash is not None:
        set_password(session, services.tokens, user, password_hash)
    replaced = None
    if new_picture is not None:
        replaced, user.profile_picture_key = user.profile_picture_key, new_picture
    was_private = user.is_private
    for field, value in args.items():
        setattr(user, field, value)
    if was_private and not user.is_private:
        for pair in social.approve_all_requests(session, user):
            activity.request_approved(session, *pair)
            services.feeds.apply_change(session, social.Change("approve", follow_started=pair))  # their feeds
    user_changed(session, user.id)  # cached summaries: name, picture; the user search's entry
    profiles_changed(session, [user.id])  # the rendered full object: every field it shows
    if was_private != user.is_private:
        owner_visibility_changed(session, user.id)  # their photos' search documents
    if replaced:  # an old public picture left behind costs only its bytes
        after_commit(session).best_effort("storage.delete", services.storage.delete, [replaced])
    session.commit()
    session.refresh(user)
    return ok(services.serializer.user_full(user))


def _new_password_hash(user: User, new: str | None, current: str | None) -> str | None:
    if new is None:
        return None
    password_hash = new_password_hash(services.passwords, user, current, new)
    if password_hash is None:
        raise APIError("current_password is missing or incorrect.", error_type="OAuthException")
    return password_hash


@blp.route("/users/search", methods=["GET"])
@success(blp, 200, "Matching users (summaries)")
@require_token()
@blp.arguments(SearchArgs(), location="query")
def search_users(args):
    """Users whose username, then those whose full name, starts with q (case folded)."""
    users = services.search.users_starting(db(), current_user().id, args["q"], args["count"])
    return ok([services.serializer.user_summary(u) for u in users])


def _follow_list(kind: str, user_id: str, args):
    """A FOLLOW_LISTS list (app.reads.social) of `user_id` ("self" or an id), newest first,
    paged by follow id (`cursor`): warm in one round trip, else from the database."""
    raw_token = request_token()  # a missing token is the first thing said
    base = services.serializer.url_base()
    ids = warm_ids(*([] if user_id == "self" else [(user_id, "user id")]), (args["cursor"], "cursor"))
    warm = Miss("input", 0)
    if ids:
        owner_id = None if user_id == "self" else ids[0]
        warm = services.social_lists.follow_list(kind, services.tokens.key(raw_token), owner_id, args["count"],
                                                 ids[-1], base)
    if isinstance(warm, Rendered):
        warm_viewer(warm)
        return ok_rendered(f"[{warm.data}]", pagination=next_page("next_cursor", warm.next or None, url_param="cursor"))
    authenticate()
    user = current_user() if kind == "requested-by" else _visible_graph_owner(user_id)
    users, cursor = services.social_lists.follow_page(db(), g.token.user_id, warm, kind, user.id, args["count"],
                                                      parse_id(args["cursor"], "cursor"), base)
    return ok(users, pagination=next_page("next_cursor", cursor, url_param="cursor"))


def _visible_graph_owner(user_id: str) -> User:
    user = user_or_404(user_id)
    if not visibility.can_view_media(db(), current_user().id, user):
        raise NotAllowed("you cannot view this resource")
    return user


@blp.route("/users/<user_id>/follows", methods=["GET"])
@success(blp, 200, "A page of users (summaries), with pagination")
@errors(404)
@token_auth()  # it authenticates itself (the warm read checks the token with the page)
@token_first
@blp.arguments(CursorArgs(), location="query")
def follows(args, user_id):
    """The users this user follows."""
    return _follow_list("follows", user_id, args)


@blp.route("/users/<user_id>/followed-by", methods=["GET"])
@success(blp, 200, "A page of users (summaries), with pagination")
@errors(404)
@token_auth()
@token_first
@blp.arguments(CursorArgs(), location="query")
def followed_by(args, user_id):
    """The users who follow this user."""
    return _follow_list("followed-by", user_id, args)


@blp.route("/users/self/requested-by", methods=["GET"])
@success(blp, 200, "A page of users (summaries), with pagination")
@token_auth()
@token_first
@blp.arguments(CursorArgs(), location="query")
def requested_by(args):
    """The users who asked to follow you."""
    return _follow_list("requested-by", "self", args)
