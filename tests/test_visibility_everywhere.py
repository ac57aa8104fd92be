"""Issue 16, item 3: every read endpoint agrees with the one visibility rule
(app/social/visibility.py), cold, warm, and after every kind of change.

The generated cases: a viewer and an owner of each relation to them (the viewer
themself, an active follower, a pending requester, a stranger, one who blocked
the viewer, one the viewer blocked), each public and private (a pending
request exists only toward a private account), each with a photo ready, one
processing and one deleted. Every endpoint that shows media or a user's graph
is read for every case and must say what the rule says, as the database states
it at that moment:

- a photo by id (media, shortcode, its comments, its likes) answers 200 iff it
  exists, can_view_media(viewer, owner), and it is ready or the viewer owns it;
  otherwise a v1 error (4xx) that shows nothing;
- lists (a user's recent, a tag's, a location's, popular, liked, the feed,
  media search) hold exactly the ready photos the viewer may see (the feed:
  of the viewer and of whom they actively follow), newest first;
- a user's follows and followed-by answer iff can_view_media, and list the
  active follows; a profile, a relationship and the user search hide
  whoever blocked the viewer, and nothing else.

Each phase reads everything twice, the second read after the first warmed
every cache; the phases follow changes (unblock, privacy toggled both ways, a
request then its approval, unfollow, block, the viewer going private), so a
warm answer that outlived its change fails here. The search index is kept as
its workers would (index_photo, index_users, reindex_owner after a privacy
change): it only narrows, the rule decides.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from app.engagement import popular
from app.media import pipeline
from app.social import visibility
from models import Block, Follow, Photo, User
from models.ids import shortcode
from tests.support import Account, Shutter
from tests.test_feeds import JPEG, services_of

RELATIONS = ("follower", "pending", "stranger", "blocked_by_owner", "blocks_owner")
PLACE = {"lat": "40.7484", "lng": "-73.9857", "location_name": "Empire State"}
# What the rule must make of each case before any change (a sanity check of the cases themselves).
VISIBLE_AT_FIRST = {("self", False), ("follower", False), ("follower", True), ("stranger", False)}

ENDPOINTS = [
    "media", "shortcode", "comments", "likes",  # a photo by id
    "user-recent", "follows", "followed-by", "user", "relationship",  # one owner
    "tag-recent", "location-recent", "popular", "liked", "feed", "media-search", "user-search",  # lists
]


@dataclass
class World:
    shutter: Shutter
    viewer: Account
    owners: dict[str, Account]  # case name ("self", "follower_private", ...) → account
    photos: dict[int, tuple[str, str]] = field(default_factory=dict)  # photo id → (case, state at creation)
    location: str = ""

    @property
    def services(self):
        return services_of(self.shutter)

    def relate(self, who: Account, target: Account, action: str) -> None:
        response = self.shutter.relate(who, target, action)
        assert response.status_code == 200, (who.username, action, target.username, response.json)

    def set_private(self, account: Account, private: bool) -> None:
        response = self.shutter.post("/v1/users/self", account, is_private="true" if private else "false")
        assert response.status_code == 200, response.json
        # What the search worker does after a privacy change (owner_visibility_changed).
        self.services.search.reindex_owner(int(account.id))


def post(world: World, account: Account, *, ready: bool = True) -> int:
    """Uploaded through the API, tagged #vis at one place; if `ready`, processed, published,
    fanned out and indexed as the workers would."""
    shutter, services = world.shutter, world.services
    response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(JPEG), "p.jpg")},
                            caption="seen #vis", **PLACE)
    assert response.status_code == 202, response.json
    photo_id = int(response.json["data"]["id"].split("_")[0])
    if ready:
        with services.db.session() as session:
            assert pipeline.process_photo(session, services.storage, photo_id)
            assert pipeline.publish_photo(session, services.celery, photo_id, feeds=services.feeds)
        services.feeds.fan_out_all(photo_id)
        services.search.index_photo(photo_id)
    return photo_id


@pytest.fixture
def world(shutter) -> World:
    viewer = shutter.account("viewer")
    owners = {"self": viewer}
    for relation in RELATIONS:
        for private in (False, True):
            if relation == "pending" and not private:
                continue  # a follow of a public account is active at once
            owners[f"{relation}_{'private' if private else 'public'}"] = shutter.account(
                f"o_{relation}_{'priv' if private else 'pub'}".replace("_by_owner", "by").replace("_owner", ""))
    world = World(shutter, viewer, owners)
    # No app context around requests: the test client would share its `g` (the viewer) between them.
    # Everyone public for now: the viewer likes every photo that will be ready or deleted,
    # each owner comments on theirs, and popular ranks them all.
    doomed = {}
    for case, owner in owners.items():
        ready, doomed[case] = post(world, owner), post(world, owner)
        world.photos[ready] = (case, "ready")
        world.photos[doomed[case]] = (case, "deleted")
        for photo_id in (ready, doomed[case]):
            assert shutter.post(f"/v1/media/{photo_id}/likes", viewer).status_code == 200
            assert shutter.post(f"/v1/media/{photo_id}/comments", owner, text="mine").status_code == 200
    with world.services.db.session() as session:
        assert popular.compute(session, world.services.redis) == 2 * len(owners)
    for case, owner in owners.items():
        response = shutter.delete(f"/v1/media/{doomed[case]}_{owner.id}", owner)
        assert response.status_code == 200, response.json
        world.photos[post(world, owner, ready=False)] = (case, "processing")
    any_ready = next(i for i, (_, state) in world.photos.items() if state == "ready")
    world.location = shutter.get(f"/v1/media/{any_ready}", viewer).json["data"]["location"]["id"]

    # The relations: privacy, then follows and approvals, then blocks (a block ends the follow).
    for case, owner in owners.items():
        if case.endswith("_private"):
            world.set_private(owner, True)
    for case, owner in owners.items():
        if case.split("_")[0] in ("follower", "pending", "blocked", "blocks"):
            world.relate(viewer, owner, "follow")
            if case.endswith("_private") and not case.startswith("pending"):
                world.relate(owner, viewer, "approve")
    for privacy in ("public", "private"):
        world.relate(owners[f"blocked_by_owner_{privacy}"], viewer, "block")
        world.relate(viewer, owners[f"blocks_owner_{privacy}"], "block")
    world.services.search.index_users([int(a.id) for a in owners.values()])
    return world


# -- the rule, as the database states it now -------------------------------------------------

@dataclass
class Truth:
    can_view: dict[int, bool]  # owner id → can_view_media(viewer, owner)
    blocked_by: dict[int, bool]  # owner id → the owner blocked the viewer
    private: dict[int, bool]
    outgoing: dict[int, str | None]  # the viewer's follow status toward each owner
    ready: dict[int, list[int]]  # owner id → their ready photos, newest first
    status: dict[int, str | None]  # photo id → its status (None: gone)
    follows: dict[int, set[int]]  # user id → whom they actively follow
    followers: dict[int, set[int]]
    rule_disagrees: list[int]  # owners for whom visibility.can_view_media says otherwise

    def photo_shown(self, viewer_id: int, photo_id: int, owner_id: int) -> bool:
        status = self.status[photo_id]
        return status is not None and self.can_view[owner_id] and (status == "ready" or owner_id == viewer_id)

    def visible_ready(self) -> list[int]:
        return sorted((p for owner, photos in self.ready.items() if self.can_view[owner] for p in photos),
                      reverse=True)


def truth(world: World) -> Truth:
    viewer_id = int(world.viewer.id)
    owner_ids = [int(a.id) for a in world.owners.values()]
    with world.services.db.session() as session:
        owners = {u.id: u for u in session.scalars(select(User).where(User.id.in_(owner_ids)))}
        statuses = dict(session.execute(select(Photo.id, Photo.status).where(Photo.id.in_(list(world.photos)))).all())
        ready: dict[int, list[int]] = {i: [] for i in owner_ids}
        for photo_id, owner_id in session.execute(
                select(Photo.id, Photo.user_id).where(Photo.user_id.in_(owner_ids), Photo.status == "ready")):
            ready[owner_id].append(photo_id)
        follows: dict[int, set[int]] = {i: set() for i in owner_ids}
        followers: dict[int, set[int]] = {i: set() for i in owner_ids}
        for follower, followee in session.execute(select(Follow.follower_id, Follow.followee_id)
                                                  .where(Follow.status == "active")):
            follows.setdefault(follower, set()).add(followee)
            followers.setdefault(followee, set()).add(follower)
        blocks = set(session.execute(select(Block.blocker_id, Block.blocked_id)).all())
        outgoing = dict(session.execute(select(Follow.followee_id, Follow.status)
                                        .where(Follow.follower_id == viewer_id)).all())
        # The rule, stated here from the rows alone (not through anything the app may cache) ...
        can_view = {i: i == viewer_id or ((viewer_id, i) not in blocks and (i, viewer_id) not in blocks
                                          and (not owners[i].is_private or outgoing.get(i) == "active"))
                    for i in owner_ids}
        # ... and the app's one definition of it, which must say the same.
        disagree = [i for i in owner_ids if visibility.can_view_media(session, viewer_id, owners[i]) != can_view[i]]
        return Truth(
            can_view=can_view,
            blocked_by={i: (i, viewer_id) in blocks for i in owner_ids},
            private={i: owners[i].is_private for i in owner_ids},
            outgoing={i: outgoing.get(i) for i in owner_ids},
            rule_disagrees=disagree,
            ready={i: sorted(p, reverse=True) for i, p in ready.items()},
            status={i: statuses.get(i) for i in world.photos},
            follows=follows, followers=followers,
        )


# -- what each endpoint says -----------------------------------------------------------------

def _ids(body: dict) -> list[int]:
    return [int(m["id"].split("_")[0]) for m in body["data"]]


def _user_ids(body: dict) -> set[int]:
    return {int(u["id"]) for u in body["data"]}


def _refused(response) -> bool:
    """A v1 error envelope with a 4xx that shows nothing."""
    return (400 <= response.status_code < 500 and response.is_json
            and response.json["meta"]["code"] == response.status_code and "data" not in response.json)


def check(world: World, endpoint: str, now: Truth) -> list[str]:
    """Where `endpoint` disagrees with the rule, in words (empty: it agrees)."""
    shutter, viewer = world.shutter, world.viewer
    viewer_id = int(viewer.id)
    names = {int(a.id): case for case, a in world.owners.items()}
    wrong: list[str] = []

    def get(path: str, **params):
        return shutter.get(path, viewer, **params)

    def expect_list(path: str, expected: list[int], **params) -> None:
        response = get(path, count=100, **params)
        if response.status_code != 200:
            wrong.append(f"{path}: {response.status_code} {response.get_data(as_text=True)[:200]}")
            return
        got = _ids(response.json)
        if got != expected:
            shown = {(names[o], world.photos[p][1]) for o, photos in now.ready.items() for p in photos}
            extra = [(world.photos.get(p), now.status.get(p)) for p in set(got) - set(expected)]
            missing = [world.photos.get(p) for p in set(expected) - set(got)]
            wrong.append(f"{path}: shows {extra} it must not, misses {missing} (of {len(shown)} ready)")

    if endpoint in ("media", "shortcode", "comments", "likes"):
        for photo_id, (case, state) in world.photos.items():
            owner_id = int(world.owners[case].id)
            shown = now.photo_shown(viewer_id, photo_id, owner_id)
            path = {"media": f"/v1/media/{photo_id}", "shortcode": f"/v1/media/shortcode/{shortcode(photo_id)}",
                    "comments": f"/v1/media/{photo_id}/comments", "likes": f"/v1/media/{photo_id}/likes"}[endpoint]
            response = get(path)
            what = f"{path} ({case}, {state}, can_view={now.can_view[owner_id]})"
            if not shown:
                if not _refused(response):
                    wrong.append(f"{what}: must be refused, got {response.status_code}")
                continue
            if response.status_code != 200:
                wrong.append(f"{what}: must show, got {response.status_code} {response.get_data(as_text=True)[:160]}")
                continue
            data = response.json["data"]
            ready = now.status[photo_id] == "ready"
            if endpoint in ("media", "shortcode") and int(data["id"].split("_")[0]) != photo_id:
                wrong.append(f"{what}: answered another photo {data['id']}")
            if endpoint == "comments" and [c["text"] for c in data] != (["mine"] if ready else []):
                wrong.append(f"{what}: comments {data}")
            if endpoint == "likes" and [int(u["id"]) for u in data] != ([viewer_id] if ready else []):
                wrong.append(f"{what}: likers {data}")
        return wrong

    if endpoint in ("user-recent", "follows", "followed-by", "user", "relationship"):
        for case, owner in world.owners.items():
            owner_id = int(owner.id)
            path = {"user-recent": f"/v1/users/{owner_id}/media/recent", "follows": f"/v1/users/{owner_id}/follows",
                    "followed-by": f"/v1/users/{owner_id}/followed-by", "user": f"/v1/users/{owner_id}",
                    "relationship": f"/v1/users/{owner_id}/relationship"}[endpoint]
            if endpoint == "relationship" and owner_id == viewer_id:
                continue  # a relationship needs another user
            response = get(path, count=100) if endpoint in ("user-recent", "follows", "followed-by") else get(path)
            if endpoint in ("user", "relationship"):
                shown = not now.blocked_by[owner_id]
            else:
                shown = now.can_view[owner_id]
            what = f"{path} ({case}, can_view={now.can_view[owner_id]}, blocked_by={now.blocked_by[owner_id]})"
            if not shown:
                if not _refused(response):
                    wrong.append(f"{what}: must be refused, got {response.status_code}")
                continue
            if response.status_code != 200:
                wrong.append(f"{what}: must show, got {response.status_code} {response.get_data(as_text=True)[:160]}")
                continue
            data = response.json["data"]
            if endpoint == "user-recent" and _ids(response.json) != now.ready[owner_id]:
                wrong.append(f"{what}: {_ids(response.json)} != ready {now.ready[owner_id]}")
            if endpoint == "follows" and _user_ids(response.json) != now.follows.get(owner_id, set()):
                wrong.append(f"{what}: {_user_ids(response.json)} != {now.follows.get(owner_id)}")
            if endpoint == "followed-by" and _user_ids(response.json) != now.followers.get(owner_id, set()):
                wrong.append(f"{what}: {_user_ids(response.json)} != {now.followers.get(owner_id)}")
            if endpoint == "user" and (int(data["id"]) != owner_id or data["is_private"] != now.private[owner_id]
                                       or data["counts"]["media"] != len(now.ready[owner_id])):
                wrong.append(f"{what}: {data}")
            if endpoint == "relationship":
                outgoing = {"active": "follows", "pending": "requested"}.get(now.outgoing[owner_id], "none")
                if data["outgoing_status"] != outgoing or data["target_user_is_private"] != now.private[owner_id]:
                    wrong.append(f"{what}: {data}, the viewer's follow is {now.outgoing[owner_id]}")
        return wrong

    visible = now.visible_ready()
    if endpoint == "tag-recent":
        expect_list("/v1/tags/vis/media/recent", visible)
    elif endpoint == "location-recent":
        expect_list(f"/v1/locations/{world.location}/media/recent", visible)
    elif endpoint == "popular":  # every photo was ranked while its owner was public
        expect_list("/v1/media/popular", visible)
    elif endpoint == "liked":  # the viewer liked every photo
        expect_list("/v1/users/self/media/liked", visible)
    elif endpoint == "feed":
        followed = now.follows.get(viewer_id, set()) | {viewer_id}
        owner_of = {p: o for o, photos in now.ready.items() for p in photos}
        expect_list("/v1/users/self/feed", [p for p in visible if owner_of[p] in followed])
    elif endpoint == "media-search":
        expect_list("/v1/media/search", visible, lat=PLACE["lat"], lng=PLACE["lng"])
    elif endpoint == "user-search":
        response = get("/v1/users/search", q="o_", count=100)
        expected = {int(a.id) for case, a in world.owners.items() if case != "self" and not now.blocked_by[int(a.id)]}
        if response.status_code != 200 or _user_ids(response.json) != expected:
            wrong.append(f"/v1/users/search: {response.status_code} {response.get_data(as_text=True)[:300]}, "
                         f"expected {sorted(names[i] for i in expected)}")
    else:
        raise AssertionError(endpoint)
    return wrong


# -- the changes between phases -----------------------------------------------------------------

def _unblock(world: World) -> None:
    world.relate(world.owners["blocked_by_owner_public"], world.viewer, "unblock")
    world.relate(world.viewer, world.owners["blocks_owner_private"], "unblock")


def _toggle_privacy(world: World) -> None:
    world.set_private(world.owners["follower_public"], True)  # still an approved follower
    world.set_private(world.owners["stranger_public"], True)
    world.set_private(world.owners["stranger_private"], False)
    world.set_private(world.owners["pending_private"], False)  # going public approves the request


def _request(world: World) -> None:
    world.relate(world.viewer, world.owners["stranger_public"], "follow")  # private now: a request


def _approve(world: World) -> None:
    world.relate(world.owners["stranger_public"], world.viewer, "approve")


def _unfollow(world: World) -> None:
    world.relate(world.viewer, world.owners["follower_private"], "unfollow")
    world.relate(world.viewer, world.owners["follower_public"], "unfollow")


def _block(world: World) -> None:
    world.relate(world.owners["stranger_private"], world.viewer, "block")  # public now
    world.relate(world.viewer, world.owners["pending_private"], "block")  # public, followed now


def _viewer_goes_private(world: World) -> None:
    world.set_private(world.viewer, True)


CHANGES = [("unblock", _unblock), ("privacy toggled", _toggle_privacy), ("follow requested", _request),
           ("follow approved", _approve), ("unfollow", _unfollow), ("block", _block),
           ("viewer private", _viewer_goes_private)]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_read_agrees_with_the_rule_cold_warm_and_after_changes(world, endpoint):
    now = truth(world)
    cases = {(case, now.private[int(a.id)]) for case, a in world.owners.items()
             if now.can_view[int(a.id)]}
    assert {(case.split("_")[0] if case != "self" else "self", private) for case, private in cases} \
        == VISIBLE_AT_FIRST, cases
    names = {int(a.id): case for case, a in world.owners.items()}
    wrong = []
    for phase, change in [("first", None), *CHANGES]:
        if change is not None:
            change(world)
            now = truth(world)
        for attempt in ("cold" if change is None else "after the change", "warm"):
            wrong += [f"[{phase}, {attempt}] {w}" for w in check(world, endpoint, now)]
    assert not wrong, "\n".join(wrong)
