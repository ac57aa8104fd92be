"""Issue 11, item 7: an error inside sign-up or the token exchange reaches Sentry
without the password, the access token or the client secret anywhere in the
event: request data, headers, and every stack frame's local variables.

Sentry is a local HTTP endpoint here that records the envelopes POSTed to it.
The error is a real database failure mid-request: PostgreSQL behind
tests/faults.py's FaultProxy, refused when the write is sent; SQLite turned
read-only on the request's connection (a SQLAlchemy event of the test's).
"""
from __future__ import annotations

import gzip
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
import sentry_sdk
from sqlalchemy import event

from tests.faults import FaultProxy
from tests.support import PASSWORD, Shutter

SECRET_PASSWORD = "hunter2-correct-horse-battery"
SECRET_CLIENT = "0123456789abcdef-not-a-real-secret"


class SentryEndpoint(ThreadingHTTPServer):
    """Records the body of each envelope POSTed to /api/<project>/envelope/."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EnvelopeHandler)
        self.envelopes: list[bytes] = []
        self.received = threading.Event()

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.server_address[1]}/1"


class _EnvelopeHandler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if re.fullmatch(r"/api/\d+/envelope/", self.path):
            self.server.envelopes.append(body)
            self.server.received.set()
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args):  # quiet
        pass


@pytest.fixture
def sentry():
    server = SentryEndpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    sentry_sdk.init()  # no DSN: the rest of the suite sends nothing
    server.shutdown()
    server.server_close()


@pytest.fixture
def database(stack):
    """The app's DATABASE_URL, and `fail_on(engine, statement_start)` that makes that
    statement meet a real database failure."""
    url = stack["database_url"]
    if url.startswith("sqlite"):
        def fail_on(engine, start):
            @event.listens_for(engine, "before_cursor_execute")
            def read_only(_conn, cursor, statement, *_args):
                if statement.startswith(start):
                    cursor.execute("PRAGMA query_only = ON")  # SQLite refuses the write itself

        yield url, fail_on
        return
    parts = urlsplit(url)
    with FaultProxy(parts.hostname, parts.port or 5432) as proxy:
        def fail_on(engine, start):
            @event.listens_for(engine, "before_cursor_execute")
            def refuse(_conn, _cursor, statement, *_args):
                if statement.startswith(start):
                    proxy.refuse()  # PostgreSQL is gone mid-request

        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
        yield parts._replace(netloc=netloc).geturl(), fail_on


def events_sent(sentry: SentryEndpoint) -> bytes:
    sentry_sdk.flush(timeout=10)
    assert sentry.received.wait(10), "no event reached the Sentry endpoint"
    return b"\n".join(sentry.envelopes)


def frame_vars(raw: bytes, function: str) -> dict:
    """The local variables of `function`'s frame in the event's exception."""
    for line in raw.split(b"\n"):
        if line.startswith(b"{") and b'"exception"' in line:
            for frame in json.loads(line)["exception"]["values"][-1]["stacktrace"]["frames"]:
                if frame.get("function") == function:
                    return frame["vars"]
    raise AssertionError(f"no frame of {function} in the event")


def assert_nowhere(raw: bytes, *secrets: str) -> None:
    for secret in secrets:
        assert secret.encode() not in raw, f"{secret!r} was sent to Sentry"


def test_a_database_error_in_signup_reaches_sentry_without_secrets(make_app, sentry, database):
    url, fail_on = database
    app = make_app(sentry_dsn=sentry.dsn, database_url=url)
    shutter = Shutter(app.test_client())
    client = shutter.app_client()
    token = shutter.login("developer").json["access_token"]
    fail_on(app.extensions["shutter"].db.engine, "INSERT INTO users")
    response = shutter.client.post("/v1/users", data={
        "username": "victim", "password": SECRET_PASSWORD, "email": "victim@example.com",
        # what a careless client sends along: in the request data and headers Sentry records
        "access_token": token, "client_secret": client["client_secret"],
    }, headers={"Authorization": f"Bearer {token}", "X-Client-Secret": client["client_secret"]})
    assert response.status_code == 500 and response.json["meta"]["error_type"] == "APIError"
    raw = events_sent(sentry)
    assert b'"exception"' in raw and b"signup" in raw  # the error, with its frames
    assert frame_vars(raw, "signup")["args"]["password"] == "[Filtered]"  # locals are sent, scrubbed
    assert_nowhere(raw, SECRET_PASSWORD, token, client["client_secret"], token.split(".", 1)[1])


def test_a_database_error_in_the_token_exchange_reaches_sentry_without_secrets(make_app, sentry, database):
    url, fail_on = database
    app = make_app(sentry_dsn=sentry.dsn, database_url=url)
    shutter = Shutter(app.test_client())
    assert shutter.signup("victim", password=SECRET_PASSWORD).status_code == 201
    client = shutter.app_client()
    fail_on(app.extensions["shutter"].db.engine, "INSERT INTO access_tokens")
    response = shutter.login("victim", password=SECRET_PASSWORD)
    assert response.status_code == 500 and response.json["meta"]["error_type"] == "APIError"
    raw = events_sent(sentry)
    view = frame_vars(raw, "access_token")  # the view's locals are sent, scrubbed
    assert view["args"]["password"] == view["args"]["client_secret"] == view["token"] == "[Filtered]"
    assert_nowhere(raw, SECRET_PASSWORD, client["client_secret"], PASSWORD)
    # the token issued before the failed commit: "<user id>.<43 url-safe characters>"
    assert not re.search(rb"\d+\.[A-Za-z0-9_-]{43}", raw), "an access token was sent to Sentry"
