"""One visibility rule, two implementations: the warm feed read's Lua script
(app/feeds/rendered.py) and FeedManager.page (app/feeds/manager.py) must
answer the same for every generated case.

The viewer's feed is given every photo of every owner (as a stale fan-out
would leave them), and every photo is rendered (mi:{photo} exists, as another
viewer's warm read leaves it): so the script meets each case itself and must
drop what the rule drops, rather than missing and leaving it to Python.

Cases: an owner who is the viewer, a followed public account, a private one
that approved the viewer, a private one with the viewer's request pending, a
stranger, one who blocked the viewer, one the viewer blocked; photos ready,
processing or deleted.
"""
from __future__ import annotations

import io

import orjson
import pytest
from sqlalchemy import select

from app.feeds.rendered import Miss, RenderedPage
from app.media import pipeline
from app.platform.keys import feed_key
from app.social import visibility
from models import Follow, Photo
from tests.support import Shutter
from tests.test_feeds import JPEG, follow, post_photo, services_of
from tests.test_rendered_feed import read

RELATIONS = ("self", "follower", "approved_private", "pending_private", "stranger", "blocked_by_owner",
             "blocks_owner")
# Who the rule lets the viewer see in the home feed: the viewer and the accounts they actively follow.
SHOWN = {"self", "follower", "approved_private"}
BASE = "http://localhost"


def processing_photo(shutter: Shutter, account) -> int:
    """Uploaded and accepted, never processed (the media worker has not run)."""
    response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(JPEG), "p.jpg")})
    assert response.status_code == 202, response.json
    return int(response.json["data"]["id"].split("_")[0])


@pytest.fixture
def cases(shutter):
    """(viewer, {photo id: (relation, state)}), every photo in the viewer's feed and rendered."""
    viewer = shutter.account("viewer")
    owners = {"self": viewer}
    for relation in RELATIONS[1:]:
        owners[relation] = shutter.account(relation.replace("_", ""), private=relation.endswith("private"))
    for relation in ("follower", "approved_private", "pending_private", "blocked_by_owner", "blocks_owner"):
        follow(shutter, viewer, owners[relation])
    assert shutter.relate(owners["approved_private"], viewer, "approve").status_code == 200

    services = services_of(shutter)
    photos: dict[int, tuple[str, str]] = {}
    for relation, owner in owners.items():
        ready, deleted = post_photo(shutter, owner), post_photo(shutter, owner)
        read(shutter, owner)  # the owner's own feed: assembled, then their photos are rendered
        assert read(shutter, owner)[1], "the owner's warm read renders their photos"
        response = shutter.delete(f"/v1/media/{deleted}_{owner.id}", owner)
        assert response.status_code == 200, response.json
        photos[ready] = (relation, "ready")
        photos[deleted] = (relation, "deleted")
        photos[processing_photo(shutter, owner)] = (relation, "processing")
    # Blocks after the photos were rendered: a block ends the follow either way.
    assert shutter.relate(owners["blocked_by_owner"], viewer, "block").status_code == 200
    assert shutter.relate(viewer, owners["blocks_owner"], "block").status_code == 200
    for photo_id in photos:  # a stale fan-out: the feed holds everyone's photos
        services.feeds.deliver(photo_id, [int(viewer.id)])
    return viewer, photos


def rule(session, viewer_id: int, photo_ids) -> list[int]:
    """The rule as the database states it, newest first: visible to the viewer
    (app.social.visibility), and the viewer's own or an active followee's (a
    home feed holds no one else's)."""
    followees = set(session.scalars(
        select(Follow.followee_id).where(Follow.follower_id == viewer_id, Follow.status == "active")))
    visible = visibility.visible_photo_ids(session, viewer_id, photo_ids)
    owners = dict(session.execute(select(Photo.id, Photo.user_id).where(Photo.id.in_(visible))).all())
    return sorted((i for i in visible if owners[i] == viewer_id or owners[i] in followees), reverse=True)


def python_walk(services, viewer_id: int, count: int) -> list[list[int]]:
    """FeedManager.page, page by page."""
    pages, max_id = [], None
    with services.db.session() as session:
        while True:
            page = services.feeds.page(session, viewer_id, count, max_id=max_id)
            pages.append(page.photo_ids)
            if page.next_max_id is None:
                return pages
            max_id = page.next_max_id


def script_read(services, token_key: str, count: int, max_id: int | None = None):
    """The script's own answer: a Miss, or the page's ids and its next cursor."""
    page = services.rendered.read(token_key, count, max_id, None, BASE)
    if isinstance(page, Miss):
        return page
    assert isinstance(page, RenderedPage)
    return [int(m["id"].split("_")[0]) for m in orjson.loads(f"[{page.data}]")], page.next_max_id


def test_the_script_and_feedmanager_apply_the_same_rule(shutter, cases):
    viewer, photos = cases
    viewer_id = int(viewer.id)
    services = services_of(shutter)
    app = shutter.client.application
    with app.app_context(), services.db.session() as session:
        expected = rule(session, viewer_id, photos)
    assert {photos[i] for i in expected} == {(relation, "ready") for relation in SHOWN}

    with app.app_context():
        # Processing photos in the feed: Python drops them; the script never
        # meets them rendered (only ready photos are), so it misses and leaves
        # the page to Python rather than show them.
        assert [i for page in python_walk(services, viewer_id, 2) for i in page] == expected
        read(shutter, viewer, count=50)  # assembled: the token, the sets, the deleted photos' "gone"
        token_key = services.tokens.key(viewer.token)
        miss = script_read(services, token_key, 50)
        assert isinstance(miss, Miss) and miss.why == "media"
        processing = [i for i, (_, state) in photos.items() if state == "processing"]
        with services.db.session() as session:  # failed, and out of the feed, as fan-out never added them
            for photo_id in processing:
                pipeline.mark_failed(session, photo_id, "test: never processed")
        services.redis.zrem(feed_key(viewer_id), *map(str, processing))

        # Every other case the script decides itself: the same photos, the same pages.
        read(shutter, viewer, count=50)
        ids, cursor = script_read(services, token_key, 50)
        assert ids == expected and cursor is None
        python_pages = python_walk(services, viewer_id, 2)
        script_pages, max_id = [], None
        while True:
            answer = script_read(services, token_key, 2, max_id)
            assert not isinstance(answer, Miss), answer
            ids, max_id = answer
            script_pages.append(ids)
            if max_id is None:
                break
        assert script_pages == python_pages
