"""The official python-instagram 1.3.2 client, unpatched, pointed at a live Shutter.

The client's URLs are class attributes (api.instagram.com over https); setting
them on the instance is all it takes:

    api = instagram_api(live_server, client_id=…, client_secret=…)
    token, user = api.exchange_xauth_login_for_access_token("alice", PASSWORD)
    me = instagram_api(live_server, access_token=token).user("self")

Its constructor takes keyword arguments only (positional ones are dropped).
"""
from __future__ import annotations

import httplib2
from instagram.client import InstagramAPI

from tests.live_server import LiveServer
from tests.support import ALL_SCOPES, PASSWORD


def instagram_api(server: LiveServer, **credentials) -> InstagramAPI:
    """An InstagramAPI (client_id, client_secret, access_token, redirect_uri) that calls `server`."""
    api = InstagramAPI(**credentials)
    api.protocol = "http"
    api.host = server.host
    api.base_path = "/v1"
    api.access_token_url = f"{server.url}/oauth/access_token"
    api.authorize_url = f"{server.url}/oauth/authorize"
    return api


def xauth_token(server: LiveServer, client: dict, username: str, password: str = PASSWORD,
                scope: str = ALL_SCOPES) -> str:
    """An access token for `username`, by the client's own xAuth exchange."""
    api = instagram_api(server, client_id=client["client_id"], client_secret=client["client_secret"],
                        redirect_uri=client["redirect_uri"])
    token, _user = api.exchange_xauth_login_for_access_token(username, password, scope=scope.split())
    return token


def http_get(url: str, headers: dict | None = None) -> tuple[httplib2.Response, bytes]:
    """A GET that does not follow redirects (the authorize endpoint answers with one)."""
    http = httplib2.Http()
    http.follow_redirects = False
    return http.request(url, "GET", headers=headers or {})
