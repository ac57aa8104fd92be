"""The home feed: v1's GET /users/self/feed."""
from __future__ import annotations

from flask import g
from flask_smorest import Blueprint

from app.api.common import PageArgs, db, next_page, ok, parse_id, require_token
from app.media import media_by_ids
from app.services import services

blp = Blueprint("feeds", __name__, url_prefix="/v1", description="The home feed")


@blp.route("/users/self/feed", methods=["GET"])
@require_token()
@blp.arguments(PageArgs, location="query")
def feed(args):
    """Your photos and those of the accounts you follow, newest first."""
    session = db()
    # The token's user id is all a feed needs: no query for the User row.
    viewer_id = g.token.user_id
    page = services.feeds.page(
        session, viewer_id, args["count"], parse_id(args["max_id"], "max_id"), parse_id(args["min_id"], "min_id"))
    return ok(media_by_ids(session, page.photo_ids, viewer_id, page.entries),
              pagination=next_page("next_max_id", page.next_max_id, url_param="max_id"))
