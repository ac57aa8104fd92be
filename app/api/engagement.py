"""Likes, comments, the media you liked, and your activity feed."""
from __future__ import annotations

import marshmallow as ma
from flask import g, request

from flask import g

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
    warm_ids,
    warm_viewer,
)
from app.api.docs import errors, success, token_auth
from app.engagement import reactions as engagement
from app.errors import InvalidParameters
from app.feeds.rendered import Miss, Rendered
from app.services import services

blp = Blueprint("engagement", __name__, url_prefix="/v1", description="Likes, comments and activity")


class LikePageArgs(Schema):
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    max_like_id = ma.fields.String(load_default=None)


class ActivityArgs(Schema):
    count = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=100))
    max_id = ma.fields.String(load_default=None)


class CommentArgs(Schema):
    text = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=300))

    @ma.validates("text")
    def not_blank(self, value, **_kwargs):
        if not value.strip():
            raise ma.ValidationError("a comment needs some text")


def _photo(media_id: str):
    return services.media.visible_photo(db(), current_user().id, parse_id(media_id, "media id"))


@blp.route("/media/<media_id>/likes", methods=["GET"])
@success(blp, 200, "A page of users (summaries) who liked it, with pagination")
@errors(404)
@token_auth()  # it authenticates itself (the warm read checks the token with the page)
@token_first
@blp.arguments(LikePageArgs(), location="query")
def get_likes(args, media_id):
    """The users who liked this media, newest first (count, max_like_id)."""
    raw_token = request_token()  # a missing token is the first thing said
    base = services.serializer.url_base()
    ids = warm_ids((media_id, "media id"), (args["max_like_id"], "max_like_id"))
    warm = services.social_lists.likes(services.tokens.key(raw_token), ids[0], args["count"], ids[1], base) \
        if ids else Miss("input", 0)
    if isinstance(warm, Rendered):
        warm_viewer(warm)
        return ok_rendered(f"[{warm.data}]", pagination=next_page(
            "next_max_like_id", warm.next or None, url_param="max_like_id"))
    authenticate()
    users, cursor = services.social_lists.likes_page(db(), g.token.user_id, warm, _photo(media_id), args["count"],
                                                     parse_id(args["max_like_id"], "max_like_id"), base)
    return ok(users, pagination=next_page("next_max_like_id", cursor, url_param="max_like_id"))


@blp.route("/media/<media_id>/likes", methods=["POST"])
@success(blp, 200, "Liked (data: null)")
@errors(404)
@require_token("likes")
def like(media_id):
    """Like this media (liking twice changes nothing)."""
    engagement.like(db(), current_user().id, _photo(media_id))
    return ok(None)


@blp.route("/media/<media_id>/likes", methods=["DELETE"])
@success(blp, 200, "Unliked (data: null)")
@errors(404)
@require_token("likes")
def unlike(media_id):
    """Take your like back."""
    engagement.unlike(db(), current_user().id, _photo(media_id))
    return ok(None)


@blp.route("/media/<media_id>/comments", methods=["GET"])
@success(blp, 200, "A page of comments, oldest first, with pagination")
@errors(404)
@token_auth()  # it authenticates itself (the warm read checks the token with the page)
@token_first
@blp.arguments(CursorArgs(), location="query")
def get_comments(args, media_id):
    """This media's comments, oldest first (count, cursor)."""
    raw_token = request_token()
    base = services.serializer.url_base()
    ids = warm_ids((media_id, "media id"), (args["cursor"], "cursor"))
    warm = services.social_lists.comments(services.tokens.key(raw_token), ids[0], args["count"], ids[1], base) \
        if ids else Miss("input", 0)
    if isinstance(warm, Rendered):
        warm_viewer(warm)
        return ok_rendered(f"[{warm.data}]", pagination=next_page("next_cursor", warm.next or None, url_param="cursor"))
    authenticate()
    comments, cursor = services.social_lists.comments_page(db(), g.token.user_id, warm, _photo(media_id),
                                                           args["count"], parse_id(args["cursor"], "cursor"), base)
    return ok(comments, pagination=next_page("next_cursor", cursor, url_param="cursor"))


@blp.route("/media/<media_id>/comments", methods=["POST"])
@success(blp, 200, "The new comment")
@errors(404)
@require_token("comments")
@blp.arguments(CommentArgs(), location="form")
def comment(args, media_id):
    """Comment on this media (text: 1–300 characters; @mentions notify)."""
    viewer = current_user()
    row = engagement.add_comment(db(), viewer.id, _photo(media_id), args["text"])
    return ok(services.serializer.comment_json(row, viewer))


@blp.route("/media/<media_id>/comments/<comment_id>", methods=["DELETE"])
@success(blp, 200, "Deleted (data: null)")
@errors(404)
@require_token("comments")
def delete_comment(media_id, comment_id):
    """Delete a comment: yours, or any on your media."""
    engagement.delete_comment(db(), current_user().id, _photo(media_id),
                              parse_id(comment_id, "comment id"))
    return ok(None)


@blp.route("/users/self/media/liked", methods=["GET"])
@success(blp, 200, "A page of media, newest like first, with pagination")
@token_auth()  # it authenticates itself (the warm read checks the token with the list)
@blp.arguments(LikePageArgs(), location="query")
def liked_media(args):
    """The media you liked, newest like first (count, max_like_id)."""
    raw_token = request_token()
    base = services.serializer.url_base()
    warm = Miss("input", 0)
    try:
        max_like_id = parse_id(args["max_like_id"], "max_like_id")
    except InvalidParameters:  # refused the long way, after the token
        pass
    else:
        warm = services.lists.liked_media(services.tokens.key(raw_token), args["count"], max_like_id, base)
        if isinstance(warm, Rendered):
            warm_viewer(warm)
            return ok_rendered(f"[{warm.data}]", pagination=next_page("next_max_like_id", warm.next or None,
                                                                       url_param="max_like_id"))
    authenticate()
    viewer_id = current_user().id
    max_like_id = parse_id(args["max_like_id"], "max_like_id")
    photo_ids, cursor = engagement.liked(db(), viewer_id, args["count"], max_like_id)
    media = services.lists.liked_media_page(db(), viewer_id, warm, photo_ids, args["count"], max_like_id, base)
    return ok(media, pagination=next_page("next_max_like_id", cursor, url_param="max_like_id"))


@blp.route("/users/self/activity", methods=["GET"])
@success(blp, 200, "A page of activity, newest first, with pagination")
@token_auth()  # it authenticates itself (the warm read checks the token with the page)
@blp.arguments(ActivityArgs(), location="query")
def activity_feed(args):
    """Likes, comments, follows, follow requests and mentions of you, newest first (count, max_id)."""
    count, max_id = args["count"], parse_id(args["max_id"], "max_id")
    raw_token = request_token()
    base = services.serializer.url_base()
    warm = services.profiles.activity(services.tokens.key(raw_token), count, max_id, base, signed="sig" in request.args)
    if isinstance(warm, Rendered):
        warm_viewer(warm)
        services.profiles.mark_seen(g.token.user_id, warm)
        cursor = int(warm.next) if warm.next else None
        return ok_rendered(warm.data, pagination=next_page("next_max_id", cursor, url_param="max_id"))
    authenticate()
    objects, cursor = services.profiles.activity_page(db(), g.token.user_id, warm, count, max_id, base)
    return ok(objects, pagination=next_page("next_max_id", cursor, url_param="max_id"))
