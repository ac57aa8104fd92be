"""Issue 11, item 5: rate limits key on the client behind a trusted proxy
(TRUSTED_PROXY_HOPS), and on REMOTE_ADDR when no proxy is trusted."""
from __future__ import annotations

PROXY_ADDR = "10.0.0.1"  # what REMOTE_ADDR is behind nginx or a load balancer


def login_attempt(client, forwarded_for: str | None = None):
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return client.post("/oauth/access_token", data={"grant_type": "password", "client_id": "x", "client_secret": "y"},
                       headers=headers, environ_base={"REMOTE_ADDR": PROXY_ADDR})


def signup_attempt(client, forwarded_for: str, n: int):
    return client.post("/v1/users", data={"username": f"user{n}", "password": "long enough", "email": f"u{n}@e.com"},
                       headers={"X-Forwarded-For": forwarded_for}, environ_base={"REMOTE_ADDR": PROXY_ADDR})


def test_behind_one_proxy_each_client_has_its_own_login_bucket(make_app):
    client = make_app(login_rate_limit="3/minute", trusted_proxy_hops=1).test_client()
    for _ in range(3):
        assert login_attempt(client, "203.0.113.7").status_code == 400  # a bad client, but not limited
    assert login_attempt(client, "203.0.113.7").status_code == 429
    # another client through the same proxy is still allowed
    assert login_attempt(client, "198.51.100.2").status_code == 400
    # the proxy appends the address it saw: what the client put before it is not believed
    assert login_attempt(client, "198.51.100.2, 203.0.113.7").status_code == 429


def test_behind_one_proxy_each_client_has_its_own_signup_bucket(make_app):
    client = make_app(signup_rate_limit="2/hour", trusted_proxy_hops=1).test_client()
    assert [signup_attempt(client, "203.0.113.7", n).status_code for n in range(3)] == [201, 201, 429]
    assert signup_attempt(client, "198.51.100.2", 3).status_code == 201


def test_with_no_proxy_trusted_a_forged_forwarded_for_is_ignored(make_app):
    client = make_app(login_rate_limit="3/minute").test_client()
    for n in range(3):
        assert login_attempt(client, f"203.0.113.{n}").status_code == 400
    assert login_attempt(client, "198.51.100.9").status_code == 429
    assert login_attempt(client).status_code == 429
