"""The warm home feed read in one Redis round trip (app/feeds/rendered.py).

A warm read must say exactly what the assembled read says, change as soon as
what it shows changes, and never answer a token the assembled path refuses.
Which path answered is read off the shutter_feed_reads_total counter.
"""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event

from app.feeds.rendered import LIKED_REF, READ_CONNECTION_NAME, Miss
from app.platform.keys import liked_key, rendered_media_key
from tests.support import Shutter, assert_error
from tests.test_accounts import sign
from tests.test_feeds import follow, post_photo, services_of


def rendered_reads() -> float:
    return REGISTRY.get_sample_value("shutter_feed_reads_total", {"path": "rendered"}) or 0.0


def read(shutter, account, **params) -> tuple[dict, bool]:
    """The feed's JSON, and whether the one-round-trip path answered it."""
    before = rendered_reads()
    response = shutter.get("/v1/users/self/feed", account, **params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json, rendered_reads() == before + 1


def forget_rendered(shutter) -> None:
    """Drop every rendered object (not the feeds): the next read assembles the page."""
    redis = services_of(shutter).redis
    keys = [*redis.scan_iter("mi:*"), *redis.scan_iter("ui:*"), *redis.scan_iter("liked:*")]
    if keys:
        redis.delete(*keys)


def by_id(body: dict) -> dict[str, dict]:
    return {m["id"]: m for m in body["data"]}


@pytest.fixture
def shutter(make_app):
    """Accounts with more than one follower are celebrities here."""
    return Shutter(make_app(celebrity_threshold=1).test_client())


@pytest.fixture
def social(shutter):
    """alice follows bob, carol (private, approved) and dave (a celebrity);
    eve is followed by nobody. Photos of everyone, likes and comments on some."""
    alice, bob, carol, dave, eve, fan = (
        shutter.account(name, private=name == "carol") for name in ("alice", "bob", "carol", "dave", "eve", "fan"))
    follow(shutter, alice, bob)
    follow(shutter, alice, carol)
    assert shutter.relate(carol, alice, "approve").status_code == 200
    follow(shutter, alice, dave)
    follow(shutter, fan, dave)  # two followers: above the threshold
    photos = {who.username: [post_photo(shutter, who) for _ in range(3)] for who in (bob, carol, dave, eve, alice)}
    bobs = photos["bob"][0]
    for who in (alice, carol, eve):
        assert shutter.post(f"/v1/media/{bobs}/likes", who).status_code == 200
    assert shutter.post(f"/v1/media/{photos['dave'][1]}/comments", eve, text="nice #sunset @alice").status_code == 200
    return alice, bob, carol, dave, eve, photos


def test_a_warm_read_is_the_assembled_page_in_one_round_trip(shutter, social):
    alice, *_ = social
    cold, rendered = read(shutter, alice, count=4)
    assert not rendered
    warm, rendered = read(shutter, alice, count=4)
    assert rendered and warm == cold

    # Page by page, by max_id and by min_id: each warm page equals its assembled twin.
    pages, params = [], {"count": 4}
    while True:
        forget_rendered(shutter)
        assembled, rendered = read(shutter, alice, **params)
        assert not rendered
        again, rendered = read(shutter, alice, **params)
        assert rendered and again == assembled
        pages.append(assembled)
        if not assembled["pagination"]:
            break
        params = {"count": 4, "max_id": assembled["pagination"]["next_max_id"]}
    shown = [m["id"] for page in pages for m in page["data"]]
    assert len(shown) == len(set(shown)) == 12  # alice's, bob's, carol's, dave's: not eve's
    newer, _ = read(shutter, alice, count=20, min_id=shown[6].split("_")[0])
    assert [m["id"] for m in newer["data"]] == shown[:6]
    assert read(shutter, alice, count=20, min_id=shown[6].split("_")[0]) == (newer, True)

    # Warm, a read asks nothing of the database.
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    engine = services_of(shutter).db.engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert read(shutter, alice, count=4)[1]
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert statements == []


def test_what_a_warm_read_shows_follows_every_change(shutter, social):
    alice, bob, carol, dave, eve, photos = social
    newest_bob = f"{photos['bob'][-1]}_{bob.id}"

    def bobs_photo() -> dict:
        body, rendered = read(shutter, alice, count=20)
        assert rendered  # the change dropped what it had to; the next read rendered it again
        return by_id(body)[newest_bob]

    read(shutter, alice, count=20)
    read(shutter, alice, count=20)  # warm now
    assert bobs_photo()["user_has_liked"] is False

    assert shutter.post(f"/v1/media/{newest_bob}/likes", alice).status_code == 200
    read(shutter, alice, count=20)  # the photo was held: assembled once
    media = bobs_photo()
    assert media["user_has_liked"] is True and media["likes"]["count"] == 1
    assert [u["username"] for u in media["likes"]["data"]] == ["alice"]

    assert shutter.delete(f"/v1/media/{newest_bob}/likes", alice).status_code == 200
    read(shutter, alice, count=20)
    media = bobs_photo()
    assert media["user_has_liked"] is False and media["likes"] == {"count": 0, "data": []}

    assert shutter.post(f"/v1/media/{newest_bob}/comments", carol, text="lovely").status_code == 200
    read(shutter, alice, count=20)
    media = bobs_photo()
    assert [(c["text"], c["from"]["username"]) for c in media["comments"]["data"]] == [("lovely", "carol")]

    assert shutter.post("/v1/users/self", carol, full_name="Carol Renamed").status_code == 200
    read(shutter, alice, count=20)
    assert bobs_photo()["comments"]["data"][0]["from"]["full_name"] == "Carol Renamed"

    assert shutter.delete(f"/v1/media/{newest_bob}", bob).status_code == 200
    for _ in range(2):  # held, then known to be gone: never shown, though its feed entry is still there
        body, _ = read(shutter, alice, count=20)
        assert newest_bob not in by_id(body)
    assert read(shutter, alice, count=20)[1]


def test_unfollow_and_block_apply_to_warm_reads(shutter, social):
    alice, bob, carol, dave, eve, photos = social
    read(shutter, alice, count=20)
    owners = lambda body: {m["user"]["username"] for m in body["data"]}  # noqa: E731
    assert owners(read(shutter, alice, count=20)[0]) == {"alice", "bob", "carol", "dave"}
    assert shutter.relate(alice, dave, "unfollow").status_code == 200
    read(shutter, alice, count=20)
    body, rendered = read(shutter, alice, count=20)
    assert rendered and owners(body) == {"alice", "bob", "carol"}
    assert shutter.relate(carol, alice, "block").status_code == 200
    read(shutter, alice, count=20)
    body, rendered = read(shutter, alice, count=20)
    assert rendered and owners(body) == {"alice", "bob"}


def test_a_warm_read_refuses_what_the_assembled_read_refuses(shutter, social):
    alice, *_ = social
    read(shutter, alice)
    assert read(shutter, alice)[1]
    services = services_of(shutter)
    with services.db.session() as session:
        services.tokens.revoke_all(session, int(alice.id))
        session.commit()
    assert_error(shutter.get("/v1/users/self/feed", alice), 400, "OAuthAccessTokenException")
    assert_error(shutter.get("/v1/users/self/feed", access_token=alice.token + "x"), 400,
                 "OAuthAccessTokenException")


def test_a_warm_read_still_needs_the_clients_signature(shutter, social):
    alice, *_ = social
    client = shutter.register_client("alice", enforce_signed_requests="true").json["data"]
    token = shutter.login("alice", client=client).json["access_token"]
    params = {"access_token": token, "count": "5"}
    params["sig"] = sign(client["client_secret"], "/users/self/feed", params)
    for _ in range(2):  # assembled, then rendered
        assert shutter.get("/v1/users/self/feed", **params).status_code == 200
    assert_error(shutter.get("/v1/users/self/feed", access_token=token, count="5"), 403, "OAuthForbiddenException")


def test_a_caption_cannot_pass_for_a_placeholder(shutter):
    """Rendered media are cut at placeholders and carry \\x01 for the base URL;
    a caption made of such text stays text."""
    alice = shutter.account("alice")
    caption = f'"{LIKED_REF}" \x01 "u{alice.id}" {{"u{alice.id}"}}'
    post_photo(shutter, alice, fan_out=False, caption=caption)
    assembled, _ = read(shutter, alice)
    body, rendered = read(shutter, alice)
    assert rendered and body == assembled
    assert body["data"][0]["caption"]["text"] == caption
    assert body["data"][0]["images"]["thumbnail"]["url"].startswith("http")


def test_a_reader_that_missed_before_a_change_cannot_store_the_old_state(shutter, social):
    """The race the tombstones close: a read misses, loads the page, a like is
    committed meanwhile, then the reader stores what it loaded: refused."""
    alice, bob, *_ , photos = social
    services = services_of(shutter)
    rendered = services.rendered
    forget_rendered(shutter)
    token_key = services.tokens.key(alice.token)
    read(shutter, alice)  # the token, feed and sets are built; rendered media are not
    forget_rendered(shutter)
    miss = rendered.read(token_key, 20, None, None, "http://localhost")
    assert isinstance(miss, Miss) and miss.why == "liked"
    with shutter.client.application.app_context(), services.db.session() as session:  # the reader loads the page ...
        page = services.feeds.page(session, int(alice.id), 20)
        users = services.media.page_users(session, page.entries, page.photo_ids)
        newest_bob = photos["bob"][-1]
        assert newest_bob in page.photo_ids
        session.rollback()  # its reads are done (SQLite would hold its lock otherwise)
        # ... a like is committed and its writer forgets what it changed ...
        assert shutter.post(f"/v1/media/{newest_bob}_{bob.id}/likes", alice).status_code == 200
        # ... and the reader stores what it loaded before: neither the photo nor the likes set take it.
        rendered.warm(session, int(alice.id), miss, page, users, "http://localhost")
    redis = services.redis
    assert redis.get(rendered_media_key(newest_bob)).startswith("~")
    assert not redis.sismember(liked_key(int(alice.id)), "0")
    stale_free, _ = read(shutter, alice)
    body, was_rendered = read(shutter, alice)
    assert was_rendered and body == stale_free
    assert by_id(body)[f"{newest_bob}_{bob.id}"]["user_has_liked"] is True


def test_a_rebuild_of_the_likes_that_started_before_an_unlike_is_refused(shutter, social):
    alice, bob, *_ , photos = social
    services = services_of(shutter)
    target = photos["bob"][-1]
    assert shutter.post(f"/v1/media/{target}_{bob.id}/likes", alice).status_code == 200
    redis = services.redis
    redis.delete(liked_key(int(alice.id)))
    miss = services.rendered.read(services.tokens.key(alice.token), 20, None, None, "http://localhost")
    assert isinstance(miss, Miss)
    with shutter.client.application.app_context(), services.db.session() as session:
        # The rebuild's query runs after the unlike here, but the point is when it
        # started: any like or unlike committed after its miss makes it unsafe.
        assert shutter.delete(f"/v1/media/{target}_{bob.id}/likes", alice).status_code == 200
        services.rendered.build_liked(session, int(alice.id), miss.since)
    assert not redis.sismember(liked_key(int(alice.id)), "0")  # refused: not built
    read(shutter, alice, count=20)
    body, was_rendered = read(shutter, alice, count=20)
    assert was_rendered and by_id(body)[f"{target}_{bob.id}"]["user_has_liked"] is False


@pytest.mark.parametrize("params", [
    {"max_id": "0"}, {"min_id": "0"}, {"max_id": "9223372036854775807"}, {"min_id": "9223372036854775807"},
    {"max_id": "1", "min_id": "9223372036854775807"}, {"count": "1"}, {"count": "100"},
])
def test_edge_cursors_read_the_same_warm_or_cold(shutter, social, params):
    alice, *_ = social
    forget_rendered(shutter)
    assembled, rendered = read(shutter, alice, **params)
    assert not rendered
    assert read(shutter, alice, **params) == (assembled, True)


def test_a_redis_that_lost_its_scripts_still_serves_the_feed(shutter, social):
    """After a Redis restart or SCRIPT FLUSH, the scripts are loaded again."""
    alice, *_ = social
    read(shutter, alice)
    warm, rendered = read(shutter, alice)
    assert rendered
    services_of(shutter).redis.script_flush()
    assert read(shutter, alice) == (warm, True)
    forget_rendered(shutter)
    services_of(shutter).redis.script_flush()
    assert read(shutter, alice)[0] == warm  # assembled, and its fill script loaded again
    assert read(shutter, alice) == (warm, True)


def test_an_index_entry_the_script_cannot_read_is_assembled(shutter, social):
    """The script reads index entries by position (19-digit ids, 20-digit
    hashes): one of another shape makes the read assemble the page, never
    serve a wrong one."""
    alice, *_ = social
    read(shutter, alice)
    warm, rendered = read(shutter, alice)
    assert rendered
    redis = services_of(shutter).redis
    key = rendered_media_key(int(warm["data"][0]["id"].split("_")[0]))
    owner, digest, refs = redis.get(key).split("\x04")
    for odd in (f"{owner[1:]}\x04{digest}\x04{refs}", f"{owner}\x04{digest}0\x04{refs}", f"{owner}\x04{digest}\x04{refs},1"):
        redis.set(key, odd)
        assert read(shutter, alice) == (warm, False)


def test_a_dropped_read_connection_is_opened_again(shutter, social):
    """The warm read has a connection of its own per thread (not the pool's):
    when Redis drops it (a restart, a timeout, CLIENT KILL), the read still answers."""
    alice, *_ = social
    read(shutter, alice)
    warm, rendered = read(shutter, alice)
    assert rendered
    redis = services_of(shutter).redis
    own = [c["id"] for c in redis.client_list() if c["name"] == READ_CONNECTION_NAME]
    assert own
    for client_id in own:
        redis.client_kill_filter(_id=client_id)
    assert read(shutter, alice) == (warm, True)
    assert read(shutter, alice) == (warm, True)
    assert READ_CONNECTION_NAME in [c["name"] for c in redis.client_list()]  # all were killed: this one is new


def fragments_fetched() -> float:
    return REGISTRY.get_sample_value("shutter_feed_fragments_total", {"source": "redis"}) or 0.0


def test_a_worker_new_to_the_fragments_fetches_them_and_keeps_them(shutter, social, make_app):
    """Each worker keeps the rendered fragments it has seen or rendered; another
    worker (here: a second app on the same Redis) fetches them once, then has them."""
    alice, *_ = social
    read(shutter, alice)
    before = fragments_fetched()
    warm, rendered = read(shutter, alice)
    assert rendered
    assert fragments_fetched() == before  # the worker that assembled the page kept what it rendered
    other = Shutter(make_app(celebrity_threshold=1).test_client())
    before = fragments_fetched()
    assert read(other, alice) == (warm, True)
    assert fragments_fetched() > before
    before = fragments_fetched()
    assert read(other, alice) == (warm, True)
    assert fragments_fetched() == before


def test_fragments_that_redis_lost_are_rendered_again(shutter, social, make_app):
    """A worker that lacks a fragment Redis no longer holds (expired, evicted)
    assembles the page, which stores the fragments again."""
    alice, *_ = social
    read(shutter, alice)
    warm, _ = read(shutter, alice)
    redis = services_of(shutter).redis
    redis.delete(*redis.scan_iter("rb:*"))
    other = Shutter(make_app(celebrity_threshold=1).test_client())
    miss = REGISTRY.get_sample_value("shutter_feed_reads_total", {"path": "miss:fragments"}) or 0.0
    assert read(other, alice) == (warm, False)
    assert REGISTRY.get_sample_value("shutter_feed_reads_total", {"path": "miss:fragments"}) == miss + 1
    assert read(other, alice) == (warm, True)
    assert read(shutter, alice) == (warm, True)  # the first worker still had them all along
    third = Shutter(make_app(celebrity_threshold=1).test_client())
    assert read(third, alice) == (warm, True)  # Redis has them again
