"""The social graph: v1's relationship actions, the follow lists, private
accounts, blocks, and counts that stay exact under concurrent requests (issue 2)."""
from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support import Account, Shutter, assert_error


@pytest.fixture
def settings(settings):
    # The concurrency tests sign up more users than the default 20 an hour.
    return dataclasses.replace(settings, signup_rate_limit="100/minute", login_rate_limit="100/minute")


@pytest.fixture
def alice(shutter):
    return shutter.account("alice")


@pytest.fixture
def bob(shutter):
    return shutter.account("bob")


@pytest.fixture
def private_bob(shutter):
    return shutter.account("bob", private=True)


def relationship(shutter: Shutter, viewer: Account, target: Account) -> dict:
    response = shutter.get(f"/v1/users/{target.id}/relationship", viewer)
    assert response.status_code == 200, response.json
    return response.json["data"]


def statuses(shutter: Shutter, viewer: Account, target: Account) -> tuple[str, str]:
    data = relationship(shutter, viewer, target)
    return data["outgoing_status"], data["incoming_status"]


def counts(shutter: Shutter, user: Account) -> tuple[int, int]:
    """(follows, followed_by) of `user`, as its own profile shows them."""
    data = shutter.get("/v1/users/self", user).json["data"]["counts"]
    return data["follows"], data["followed_by"]


def listed(shutter: Shutter, viewer: Account, path: str, **params) -> list[str]:
    response = shutter.get(path, viewer, **params)
    assert response.status_code == 200, response.json
    return [user["id"] for user in response.json["data"]]


def relate_ok(shutter: Shutter, who: Account, target: Account, action: str) -> dict:
    response = shutter.relate(who, target, action)
    assert response.status_code == 200, response.json
    return response.json["data"]


# -- follow / unfollow -----------------------------------------------------------
def test_following_a_public_account_follows_it(shutter, alice, bob):
    data = relate_ok(shutter, alice, bob, "follow")
    assert data == {"outgoing_status": "follows", "incoming_status": "none", "target_user_is_private": False}
    assert statuses(shutter, bob, alice) == ("none", "followed_by")
    assert counts(shutter, alice) == (1, 0) and counts(shutter, bob) == (0, 1)


def test_following_twice_counts_once(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "follow")
    assert relate_ok(shutter, alice, bob, "follow")["outgoing_status"] == "follows"
    assert counts(shutter, alice) == (1, 0) and counts(shutter, bob) == (0, 1)


def test_following_a_private_account_requests_it(shutter, alice, private_bob):
    data = relate_ok(shutter, alice, private_bob, "follow")
    assert data == {"outgoing_status": "requested", "incoming_status": "none", "target_user_is_private": True}
    assert statuses(shutter, private_bob, alice) == ("none", "requested_by")
    assert listed(shutter, private_bob, "/v1/users/self/requested-by") == [alice.id]
    assert counts(shutter, alice) == (0, 0) and counts(shutter, private_bob) == (0, 0)


def test_unfollow_ends_the_follow(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "follow")
    assert relate_ok(shutter, alice, bob, "unfollow")["outgoing_status"] == "none"
    assert counts(shutter, alice) == (0, 0) and counts(shutter, bob) == (0, 0)
    assert listed(shutter, bob, "/v1/users/self/followed-by") == []


def test_unfollow_withdraws_a_request(shutter, alice, private_bob):
    relate_ok(shutter, alice, private_bob, "follow")
    assert relate_ok(shutter, alice, private_bob, "unfollow")["outgoing_status"] == "none"
    assert listed(shutter, private_bob, "/v1/users/self/requested-by") == []


def test_unfollow_without_a_follow_changes_nothing(shutter, alice, bob):
    assert relate_ok(shutter, alice, bob, "unfollow")["outgoing_status"] == "none"
    assert counts(shutter, alice) == (0, 0) and counts(shutter, bob) == (0, 0)


# -- block / unblock ----------------------------------------------------------------
def test_block_removes_follows_both_ways(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "follow")
    relate_ok(shutter, bob, alice, "follow")
    data = relate_ok(shutter, alice, bob, "block")
    assert (data["outgoing_status"], data["incoming_status"]) == ("none", "blocked_by_you")
    assert counts(shutter, alice) == (0, 0) and counts(shutter, bob) == (0, 0)
    assert listed(shutter, alice, "/v1/users/self/followed-by") == []
    assert listed(shutter, bob, "/v1/users/self/followed-by") == []


def test_block_removes_a_pending_request(shutter, bob):
    private_alice = shutter.account("alice", private=True)
    relate_ok(shutter, bob, private_alice, "follow")
    relate_ok(shutter, private_alice, bob, "block")
    assert listed(shutter, private_alice, "/v1/users/self/requested-by") == []


def test_blocking_twice_is_harmless(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "block")
    assert relate_ok(shutter, alice, bob, "block")["incoming_status"] == "blocked_by_you"


def test_a_blocked_user_cannot_follow(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "block")
    assert_error(shutter.relate(bob, alice, "follow"), 400, "APINotAllowedError")
    assert counts(shutter, alice) == (0, 0)


def test_the_blocker_cannot_follow_whom_they_blocked(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "block")
    assert_error(shutter.relate(alice, bob, "follow"), 400, "APINotAllowedError")


def test_a_blocked_user_can_block_back(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "block")
    assert relate_ok(shutter, bob, alice, "block")["incoming_status"] == "blocked_by_you"


def test_unblock_lets_them_follow_again(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "block")
    assert relate_ok(shutter, alice, bob, "unblock")["incoming_status"] == "none"
    assert relate_ok(shutter, bob, alice, "follow")["outgoing_status"] == "follows"
    assert counts(shutter, alice) == (0, 1)


# -- approve / ignore ----------------------------------------------------------------
def test_approve_turns_a_request_into_a_follow(shutter, alice, private_bob):
    relate_ok(shutter, alice, private_bob, "follow")
    data = relate_ok(shutter, private_bob, alice, "approve")
    assert data["incoming_status"] == "followed_by"
    assert statuses(shutter, alice, private_bob) == ("follows", "none")
    assert counts(shutter, alice) == (1, 0) and counts(shutter, private_bob) == (0, 1)
    assert listed(shutter, private_bob, "/v1/users/self/requested-by") == []
    assert listed(shutter, private_bob, "/v1/users/self/followed-by") == [alice.id]


def test_approving_twice_counts_once(shutter, alice, private_bob):
    relate_ok(shutter, alice, private_bob, "follow")
    relate_ok(shutter, private_bob, alice, "approve")
    relate_ok(shutter, private_bob, alice, "approve")
    assert counts(shutter, alice) == (1, 0) and counts(shutter, private_bob) == (0, 1)


def test_approve_without_a_request_is_400(shutter, alice, private_bob):
    assert_error(shutter.relate(private_bob, alice, "approve"), 400, "APIInvalidParametersError")


def test_ignore_drops_the_request(shutter, alice, private_bob):
    relate_ok(shutter, alice, private_bob, "follow")
    assert relate_ok(shutter, private_bob, alice, "ignore")["incoming_status"] == "none"
    assert statuses(shutter, alice, private_bob) == ("none", "none")
    assert listed(shutter, private_bob, "/v1/users/self/requested-by") == []
    assert counts(shutter, alice) == (0, 0) and counts(shutter, private_bob) == (0, 0)


def test_making_a_private_account_public_approves_its_requests(shutter, alice, bob):
    carol = shutter.account("carol", private=True)
    relate_ok(shutter, alice, carol, "follow")
    relate_ok(shutter, bob, carol, "follow")
    response = shutter.post("/v1/users/self", carol, is_private="false")
    assert response.status_code == 200
    assert response.json["data"]["counts"]["followed_by"] == 2
    assert statuses(shutter, alice, carol) == ("follows", "none")
    assert listed(shutter, carol, "/v1/users/self/requested-by") == []
    assert sorted(listed(shutter, carol, "/v1/users/self/followed-by")) == sorted([alice.id, bob.id])
    assert counts(shutter, alice) == (1, 0) and counts(shutter, bob) == (1, 0)


# -- bad requests ----------------------------------------------------------------------
def test_an_unknown_action_is_400(shutter, alice, bob, subtests):
    for action in ["", "like", "FOLLOW", "follow "]:
        with subtests.test(action=action):
            assert_error(shutter.relate(alice, bob, action), 400, "APIInvalidParametersError")
    with subtests.test(action=None):
        response = shutter.post(f"/v1/users/{bob.id}/relationship", alice)
        assert_error(response, 400, "APIInvalidParametersError")


def test_a_relationship_with_yourself_is_400(shutter, alice, subtests):
    for target in ["self", alice.id]:
        with subtests.test(target=target):
            response = shutter.post(f"/v1/users/{target}/relationship", alice, action="follow")
            assert_error(response, 400, "APIInvalidParametersError")
            assert_error(shutter.get(f"/v1/users/{target}/relationship", alice), 400, "APIInvalidParametersError")
    assert counts(shutter, alice) == (0, 0)


def test_a_relationship_with_an_unknown_user_is_404(shutter, alice):
    assert_error(shutter.post("/v1/users/12345/relationship", alice, action="follow"), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/users/12345/relationship", alice), 404, "APINotFoundError")


def test_a_relationship_with_a_malformed_id_is_400(shutter, alice):
    assert_error(shutter.post("/v1/users/abc/relationship", alice, action="follow"), 400, "APIInvalidParametersError")


# -- follow lists and their pages ---------------------------------------------------------
def walk_pages(shutter: Shutter, viewer: Account, path: str, count: int) -> list[list[str]]:
    """Every page of a list, following `pagination.next_url` as a client would."""
    pages = []
    response = shutter.get(path, viewer, count=count)
    while True:
        assert response.status_code == 200, response.json
        pages.append([user["id"] for user in response.json["data"]])
        pagination = response.json.get("pagination") or {}
        if "next_url" not in pagination:
            return pages
        url = urlsplit(pagination["next_url"])
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert params["cursor"] == pagination["next_cursor"] and params["count"] == str(count)
        response = shutter.get(url.path, viewer, **params)


def test_followed_by_pages_without_gaps_or_duplicates(shutter, bob):
    followers = [shutter.account(f"fan{i}") for i in range(5)]
    for fan in followers:
        relate_ok(shutter, fan, bob, "follow")
    pages = walk_pages(shutter, bob, f"/v1/users/{bob.id}/followed-by", count=2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sum(pages, []) == [fan.id for fan in reversed(followers)]  # newest first


def test_follows_pages_without_gaps_or_duplicates(shutter, alice):
    idols = [shutter.account(f"idol{i}") for i in range(3)]
    for idol in idols:
        relate_ok(shutter, alice, idol, "follow")
    pages = walk_pages(shutter, alice, "/v1/users/self/follows", count=2)
    assert pages == [[idols[2].id, idols[1].id], [idols[0].id]]


def test_requested_by_pages_without_gaps_or_duplicates(shutter, private_bob):
    fans = [shutter.account(f"fan{i}") for i in range(3)]
    for fan in fans:
        relate_ok(shutter, fan, private_bob, "follow")
    pages = walk_pages(shutter, private_bob, "/v1/users/self/requested-by", count=2)
    assert pages == [[fans[2].id, fans[1].id], [fans[0].id]]


def test_a_full_page_without_more_has_no_next_cursor(shutter, alice, bob):
    relate_ok(shutter, alice, bob, "follow")
    response = shutter.get(f"/v1/users/{bob.id}/followed-by", alice, count=1)
    assert [user["id"] for user in response.json["data"]] == [alice.id]
    assert "next_cursor" not in response.json["pagination"]


def test_follow_lists_reject_bad_paging_parameters(shutter, alice, subtests):
    for params in [{"cursor": "abc"}, {"cursor": "-5"}, {"count": 0}, {"count": 101}]:
        with subtests.test(**params):
            response = shutter.get("/v1/users/self/followed-by", alice, **params)
            assert_error(response, 400, "APIInvalidParametersError")


def test_a_private_accounts_lists_are_hidden_from_non_followers(shutter, alice, private_bob):
    relate_ok(shutter, alice, private_bob, "follow")  # only requested
    for path in ("follows", "followed-by"):
        assert_error(shutter.get(f"/v1/users/{private_bob.id}/{path}", alice), 400, "APINotAllowedError")


def test_a_private_accounts_lists_are_visible_to_approved_followers(shutter, alice, private_bob):
    relate_ok(shutter, alice, private_bob, "follow")
    relate_ok(shutter, private_bob, alice, "approve")
    assert listed(shutter, alice, f"/v1/users/{private_bob.id}/followed-by") == [alice.id]
    assert listed(shutter, alice, f"/v1/users/{private_bob.id}/follows") == []


def test_a_private_accounts_lists_are_visible_to_itself(shutter, alice, private_bob):
    relate_ok(shutter, private_bob, alice, "follow")
    assert listed(shutter, private_bob, "/v1/users/self/follows") == [alice.id]
    assert listed(shutter, private_bob, f"/v1/users/{private_bob.id}/followed-by") == []


# -- counts under concurrency ------------------------------------------------------------
def run_concurrently(app, calls) -> list:
    """Each call(test_client) in its own thread with its own client, all released together."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        client = app.test_client()
        barrier.wait(timeout=30)
        return call(client)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(run, call) for call in calls]]


def relationship_call(target: Account, who: Account, action: str):
    def call(client):
        statuses = []
        for _ in range(2):  # every action is sent twice, as a retrying client would
            response = client.post(f"/v1/users/{target.id}/relationship",
                                   data={"action": action, "access_token": who.token})
            statuses.append(response.status_code)
        return statuses

    return call


def test_concurrent_follows_count_each_follower_once(shutter, app, bob):
    fans = [shutter.account(f"fan{i}") for i in range(20)]
    results = run_concurrently(app, [relationship_call(bob, fan, "follow") for fan in fans])
    assert results == [[200, 200]] * len(fans)
    assert counts(shutter, bob) == (0, len(fans))
    assert all(counts(shutter, fan) == (1, 0) for fan in fans)
    assert sorted(listed(shutter, bob, "/v1/users/self/followed-by", count=100)) == sorted(f.id for f in fans)


def test_concurrent_unfollows_bring_the_count_back_to_zero(shutter, app, bob):
    fans = [shutter.account(f"fan{i}") for i in range(20)]
    for fan in fans:
        relate_ok(shutter, fan, bob, "follow")
    results = run_concurrently(app, [relationship_call(bob, fan, "unfollow") for fan in fans])
    assert results == [[200, 200]] * len(fans)
    assert counts(shutter, bob) == (0, 0)
    assert all(counts(shutter, fan) == (0, 0) for fan in fans)
