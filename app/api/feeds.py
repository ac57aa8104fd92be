"""The home feed: v1's GET /users/self/feed."""
from __future__ import annotations

from flask import g

from app.api.common import (Blueprint, PageArgs, authenticate, db, next_page, ok, ok_rendered, parse_id,
                            request_token, warm_viewer)
from app.api.docs import success, token_auth
from app.feeds.rendered import RenderedPage
from app.services import services

blp = Blueprint("feeds", __name__, url_prefix="/v1", description="The home feed")


@blp.route("/users/self/feed", methods=["GET"])
@success(blp, 200, "A page of media, newest first, with pagination")
@token_auth()  # it authenticates itself (the warm read checks the token with the page)
@blp.arguments(PageArgs(), location="query")
def feed(args):
    """Your photos and those of the accounts you follow, newest first."""
    count, max_id, min_id = args["count"], parse_id(args["max_id"], "max_id"), parse_id(args["min_id"], "min_id")
    raw_token = request_token()

    # Warm: one round trip does the token, the page and its media objects (app/feeds/rendered.py).
    base = services.serializer.url_base()
    rendered = services.rendered.read(services.tokens.key(raw_token), count, max_id, min_id, base)
    if isinstance(rendered, RenderedPage):
        warm_viewer(rendered)
        return ok_rendered(f"[{rendered.data}]",
                           pagination=next_page("next_max_id", rendered.next_max_id, url_param="max_id"))

    # Cold: assemble the page from FeedManager and the cache, then warm what it used.
    authenticate()
    session = db()
    viewer_id = g.token.user_id  # all a feed needs: no query for the User row
    page = services.feeds.page(session, viewer_id, count, max_id, min_id)
    users = services.media.page_users(session, page.entries, page.photo_ids)
    media = services.media.by_ids(session, page.photo_ids, viewer_id, page.entries, users)
    services.rendered.warm(session, viewer_id, rendered, page, users, base)
    return ok(media, pagination=next_page("next_max_id", page.next_max_id, url_param="max_id"))
