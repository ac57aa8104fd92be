"""A thin client for the tests: sign up, log in, and call the API as someone."""
from __future__ import annotations

import base64
from dataclasses import dataclass

ALL_SCOPES = "basic comments relationships likes publish"
PASSWORD = "correct horse battery"


@dataclass
class Account:
    id: str
    username: str
    token: str


def basic_auth(username: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def assert_error(response, code: int, error_type: str) -> dict:
    """The v1 error envelope, with the same HTTP status; returns its meta."""
    assert response.status_code == code, response.get_data(as_text=True)
    assert response.is_json, response.get_data(as_text=True)
    meta = response.json["meta"]
    assert meta["code"] == code and meta["error_type"] == error_type, meta
    assert meta["error_message"]
    return meta


class Shutter:
    def __init__(self, client) -> None:
        self.client = client
        self._app_client: dict | None = None

    # -- set-up -------------------------------------------------------------
    def signup(self, username: str, password: str = PASSWORD, email: str | None = None, **fields):
        data = {"username": username, "password": password, "email": email or f"{username}@example.com", **fields}
        return self.client.post("/v1/users", data=data)

    def register_client(self, username: str, password: str = PASSWORD, **fields):
        data = {"name": "test app", "redirect_uri": "http://localhost:9999/callback", **fields}
        return self.client.post("/v1/clients", data=data, headers=basic_auth(username, password))

    def app_client(self) -> dict:
        """One API client per test, owned by a developer account."""
        if self._app_client is None:
            assert self.signup("developer").status_code == 201
            response = self.register_client("developer")
            assert response.status_code == 201, response.json
            self._app_client = response.json["data"]
        return self._app_client

    def login(self, username: str, password: str = PASSWORD, scope: str = ALL_SCOPES, client: dict | None = None):
        client = client or self.app_client()
        return self.client.post("/oauth/access_token", data={
            "grant_type": "password", "username": username, "password": password, "scope": scope,
            "client_id": client["client_id"], "client_secret": client["client_secret"],
        })

    def account(self, username: str, *, private: bool = False, scope: str = ALL_SCOPES,
                client: dict | None = None) -> Account:
        """Signed up and logged in through `client` (default: the test's API client)."""
        response = self.signup(username)
        assert response.status_code == 201, response.json
        login = self.login(username, scope=scope, client=client)
        assert login.status_code == 200, login.json
        account = Account(response.json["data"]["id"], username, login.json["access_token"])
        if private:
            assert self.post("/v1/users/self", account, is_private="true").status_code == 200
        return account

    # -- calls --------------------------------------------------------------
    def get(self, path: str, as_: Account | None = None, **params):
        if as_ is not None:
            params["access_token"] = as_.token
        return self.client.get(path, query_string=params)

    def post(self, path: str, as_: Account | None = None, files: dict | None = None, headers=None, **data):
        if as_ is not None:
            data["access_token"] = as_.token
        return self.client.post(path, data={**data, **(files or {})}, headers=headers or {})

    def delete(self, path: str, as_: Account | None = None, **params):
        if as_ is not None:
            params["access_token"] = as_.token
        return self.client.delete(path, query_string=params)

    def relate(self, who: Account, target: Account, action: str):
        return self.post(f"/v1/users/{target.id}/relationship", who, action=action)
