"""Issue 14, item 1: the devices API and the push preferences; both stacks."""
from __future__ import annotations

import pytest

from tests.support import assert_error

TOKEN_A = "a1" * 32
TOKEN_B = "B2" * 32  # upper case: stored and listed lower-cased


def devices(shutter, account) -> list[dict]:
    response = shutter.get("/v1/users/self/devices", account)
    assert response.status_code == 200, response.json
    return response.json["data"]


def test_register_list_and_delete_your_devices(shutter):
    alice = shutter.account("alice")
    response = shutter.post("/v1/users/self/devices", alice, token=TOKEN_A)
    assert response.status_code == 201, response.json
    assert response.json["data"]["token"] == TOKEN_A
    assert response.json["data"]["environment"] == "production" and response.json["data"]["topic"] is None
    response = shutter.post("/v1/users/self/devices", alice, token=TOKEN_B, environment="sandbox",
                            topic="com.example.shutter.beta")
    assert response.status_code == 201, response.json
    listed = devices(shutter, alice)
    assert [(d["token"], d["environment"], d["topic"]) for d in listed] == [
        (TOKEN_A, "production", None), (TOKEN_B.lower(), "sandbox", "com.example.shutter.beta")]
    # Registering again changes the row, not the count.
    assert shutter.post("/v1/users/self/devices", alice, token=TOKEN_A, environment="sandbox").status_code == 201
    assert [d["environment"] for d in devices(shutter, alice)] == ["sandbox", "sandbox"]
    assert shutter.delete(f"/v1/users/self/devices/{TOKEN_B}", alice).status_code == 200
    assert [d["token"] for d in devices(shutter, alice)] == [TOKEN_A]
    assert_error(shutter.delete(f"/v1/users/self/devices/{TOKEN_B}", alice), 404, "APINotFoundError")


@pytest.mark.parametrize("fields", [
    {},  # no token
    {"token": "a1" * 31},  # 62 characters
    {"token": "g1" * 32},  # not hex
    {"token": "a1" * 101},  # past 200
    {"token": "a1" * 32 + "\n"},
    {"token": TOKEN_A, "environment": "staging"},
    {"token": TOKEN_A, "topic": "not a topic"},
    {"token": TOKEN_A, "topic": "x" * 300},
])
def test_bad_devices_get_the_error_envelope(shutter, fields):
    alice = shutter.account("alice")
    assert_error(shutter.post("/v1/users/self/devices", alice, **fields), 400, "APIInvalidParametersError")
    assert devices(shutter, alice) == []


def test_a_token_registered_by_another_user_moves_to_them(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    assert shutter.post("/v1/users/self/devices", alice, token=TOKEN_A).status_code == 201
    assert shutter.post("/v1/users/self/devices", bob, token=TOKEN_A.upper()).status_code == 201
    assert devices(shutter, alice) == []
    assert [d["token"] for d in devices(shutter, bob)] == [TOKEN_A]


def test_only_your_own_devices_are_listed_and_deleted(shutter):
    alice, bob = shutter.account("alice"), shutter.account("bob")
    assert shutter.post("/v1/users/self/devices", alice, token=TOKEN_A).status_code == 201
    assert shutter.post("/v1/users/self/devices", bob, token=TOKEN_B).status_code == 201
    assert [d["token"] for d in devices(shutter, alice)] == [TOKEN_A]
    assert_error(shutter.delete(f"/v1/users/self/devices/{TOKEN_B}", alice), 404, "APINotFoundError")
    assert [d["token"] for d in devices(shutter, bob)] == [TOKEN_B.lower()]
    assert_error(shutter.delete("/v1/users/self/devices/nothex", alice), 404, "APINotFoundError")
    assert_error(shutter.delete("/v1/users/self/devices/a1%00", alice), 404, "APINotFoundError")


def test_devices_need_a_token(shutter):
    assert_error(shutter.get("/v1/users/self/devices"), 400, "OAuthParameterException")
    assert_error(shutter.post("/v1/users/self/devices", token=TOKEN_A), 400, "OAuthParameterException")


def test_preferences_switch_kinds_on_and_off(shutter):
    alice = shutter.account("alice")
    response = shutter.get("/v1/users/self/notifications", alice)
    assert response.status_code == 200
    assert response.json["data"] == {"like": True, "comment": True, "mention": True, "follow": True,
                                     "follow_request": True, "follow_accepted": True}
    response = shutter.post("/v1/users/self/notifications", alice, like="false", follow="false")
    assert response.status_code == 200, response.json
    assert response.json["data"]["like"] is False and response.json["data"]["follow"] is False
    assert response.json["data"]["comment"] is True
    # Again (nothing changes), then one back on; what is not sent stays.
    assert shutter.post("/v1/users/self/notifications", alice, like="false").json["data"]["like"] is False
    data = shutter.post("/v1/users/self/notifications", alice, like="true").json["data"]
    assert data["like"] is True and data["follow"] is False
    assert shutter.get("/v1/users/self/notifications", alice).json["data"] == data
    assert_error(shutter.post("/v1/users/self/notifications", alice, like="maybe"), 400, "APIInvalidParametersError")
    bob = shutter.account("bob")
    assert all(shutter.get("/v1/users/self/notifications", bob).json["data"].values())
