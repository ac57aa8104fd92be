"""Issue 11, item 17: on SQLite only transactions that write take the write lock.

The test holds SQLite's write lock itself (an open BEGIN IMMEDIATE on the same
database file) or probes for it (BEGIN IMMEDIATE that may not wait), at the
moment a SQLAlchemy event says the app is where it matters.
"""
from __future__ import annotations

import os
import sqlite3
import threading
from urllib.parse import urlencode

import pytest
from sqlalchemy import event

from tests.support import PASSWORD, basic_auth
from tests.test_media_privacy import ready_photo

pytestmark = pytest.mark.skipif(os.environ.get("SHUTTER_TEST_STACK", "embedded") != "embedded",
                                reason="SQLite's write lock: the embedded stack only (PostgreSQL locks rows)")

PROMPTLY = 10  # seconds; a request that waits for the lock waits busy_timeout (30 s), then fails


def sqlite_connection(settings, timeout: float) -> sqlite3.Connection:
    """A connection of the test's own, on the app's database file."""
    return sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), timeout=timeout,
                           isolation_level=None, check_same_thread=False)


def run_in_thread(work) -> tuple[threading.Thread, dict]:
    results: dict = {}

    def target():
        results.update(work())

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, results


def test_reads_answer_while_a_writer_holds_the_lock(app, shutter, settings):
    alice = shutter.account("alice")
    media = ready_photo(app, shutter, alice)
    assert shutter.get("/v1/users/self", alice).status_code == 200  # the token is cached now
    writer = sqlite_connection(settings, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    thread = None
    try:
        thread, results = run_in_thread(lambda: {
            "self": shutter.get("/v1/users/self", alice).status_code,
            "media": shutter.get(f"/v1/media/{media['id']}", alice).status_code,
            "feed": shutter.get("/v1/users/self/feed", alice).status_code,
        })
        thread.join(PROMPTLY)
        # Answered while the test still holds the write lock: the reads never asked for it.
        assert not thread.is_alive(), "a GET waited for SQLite's write lock"
        assert results == {"self": 200, "media": 200, "feed": 200}
    finally:
        writer.execute("ROLLBACK")
        writer.close()
        if thread is not None:
            thread.join(60)


def _login(shutter, client):
    return shutter.client.post("/oauth/access_token", data={
        "grant_type": "password", "username": "alice", "password": PASSWORD, "scope": "basic",
        "client_id": client["client_id"], "client_secret": client["client_secret"],
    })


def _register_client(shutter, _client):
    return shutter.register_client("alice")


def _authorize(shutter, client):
    query = urlencode({"client_id": client["client_id"], "redirect_uri": client["redirect_uri"]})
    return shutter.client.get(f"/oauth/authorize?{query}", headers=basic_auth("alice", PASSWORD))


@pytest.mark.parametrize("password_check", [_login, _register_client, _authorize],
                         ids=["token exchange", "client registration", "authorize"])
def test_password_checks_run_without_the_write_lock(app, shutter, settings, password_check):
    """Right after the app reads the user whose password it checks (argon2 is next), another
    connection takes SQLite's write lock at once: a concurrent write is not kept waiting."""
    client = shutter.app_client()
    shutter.account("alice")
    probes = []

    def probe(_conn, _cursor, statement, *_args):
        if "username_key" not in statement or "SELECT" not in statement.upper():
            return
        other = sqlite_connection(settings, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            probes.append("write lock free")
        except sqlite3.OperationalError as error:  # "database is locked"
            probes.append(str(error))
        finally:
            other.close()

    engine = app.extensions["shutter"].db.engine
    event.listen(engine, "after_cursor_execute", probe)
    try:
        response = password_check(shutter, client)
    finally:
        event.remove(engine, "after_cursor_execute", probe)
    assert response.status_code in (200, 201, 302), response.get_data(as_text=True)
    assert probes == ["write lock free"]
