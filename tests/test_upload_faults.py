"""Uploads and their processing against a slow, dead or raced storage (issue 11, items 12–14).

A sibling of test_pipeline_faults.py, built from its fixtures and helpers:
S3 is moto, reached through a FaultProxy by the worker (`s3_proxy`) or by the
API itself (`api_s3`).
"""
from __future__ import annotations

import dataclasses
import io
import threading
import time
from urllib.parse import urlsplit

import pytest
from sqlalchemy import event, func, select, text

from models import Activity, Outbox, Photo, make_engine
from tests import images
from tests.conftest import STACK
from tests.faults import FaultProxy
from tests.support import Shutter, assert_error
from tests.test_pipeline_faults import (  # noqa: F401  (fixtures)
    FAST_RETRIES,
    _make_app,
    api,
    assert_ready_everywhere,
    s3_proxy,
    s3_settings,
    shutter,
    upload,
    wait_for_status,
    wait_until,
    worker_settings,
)


@pytest.fixture
def api_s3(moto_s3_url):
    """The API's own way to S3."""
    parts = urlsplit(moto_s3_url)
    with FaultProxy(parts.hostname, parts.port) as proxy:
        yield proxy


@pytest.fixture
def slow_api(s3_settings, api_s3):
    """An API process whose S3 goes through `api_s3`."""
    app = _make_app(dataclasses.replace(s3_settings, s3_endpoint_url=api_s3.url_for("http")))
    yield app
    app.extensions["shutter"].close()


def post_upload(shutter: Shutter, account, headers=None, **fields):
    data = images.jpeg(64, 48)
    return shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(data), "p.jpg")},
                        headers=headers, **fields)


def count(app, model) -> int:
    with app.extensions["shutter"].db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def originals(s3_storage) -> list[str]:
    listing = s3_storage.client.list_objects_v2(Bucket=s3_storage.bucket, Prefix=f"{s3_storage.prefix}/originals/")
    return [item["Key"] for item in listing.get("Contents", [])]


class InThread:
    """A request made in a thread (its storage call is held meanwhile)."""

    def __init__(self, call) -> None:
        self.response = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call) -> None:
        self.response = call()

    def join(self, timeout: float = 30):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the request did not finish"
        return self.response


def wait_for_held_put(api_s3: FaultProxy) -> None:
    wait_until(lambda: api_s3.connections >= 1, what="the upload to reach S3")
    time.sleep(0.3)  # its request is sent, and held


# --- item 12: the soft time limit -------------------------------------------------


SOFT_LIMITS = {"photo_soft_time_limit_seconds": 2, "photo_time_limit_seconds": 60}


def test_a_run_past_its_soft_time_limit_is_retried_not_failed(
        s3_settings, worker_process, worker_settings, s3_proxy, s3_storage):
    """A slow but reachable S3 keeps a run past PHOTO_SOFT_TIME_LIMIT_SECONDS:
    the run is retried (and given back, as for a storage error), not failed."""
    # The API stamps the limits on the messages it publishes: the same settings on both sides.
    api = _make_app(dataclasses.replace(s3_settings, **SOFT_LIMITS))
    shutter = Shutter(api.test_client())
    worker = worker_process(dataclasses.replace(worker_settings, **SOFT_LIMITS), extra_env=FAST_RETRIES).start()
    alice = shutter.account("alice")
    # S3 starts sending the original, then stalls past the soft limit: the
    # limit strikes while the body is read (botocore retries a stall before
    # the answer's headers itself, and turns it into a StorageError).
    s3_proxy.hold_after(16 * 1024)
    original = images.jpeg(1600, 1200)
    assert len(original) > 32 * 1024
    photo_id = upload(shutter, alice, original)
    worker.wait_for_log("Soft time limit (2s) exceeded", timeout=30)
    s3_proxy.forward()
    try:
        photo = wait_for_status(api, photo_id, "ready", worker)
        assert photo.attempts == 1  # the slow runs were given back
        assert_ready_everywhere(shutter, alice, api, photo_id, s3_storage)
    finally:
        api.extensions["shutter"].close()


# --- item 13: the original is stored outside any transaction ----------------------------


@pytest.mark.skipif(STACK != "production", reason="pg_stat_activity is PostgreSQL's")
def test_no_connection_is_idle_in_transaction_while_the_original_is_stored(slow_api, settings, api_s3):
    shutter = Shutter(slow_api.test_client())
    alice = shutter.account("alice")
    api_s3.hold()
    request = InThread(lambda: post_upload(shutter, alice, headers={"Idempotency-Key": "slow-s3"}))
    wait_for_held_put(api_s3)
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            idle = connection.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"))
    finally:
        engine.dispose()
    api_s3.forward()
    response = request.join()
    assert idle == 0
    assert response.status_code == 202, response.get_data(as_text=True)


def test_a_storage_failure_during_an_upload_is_a_503_and_leaves_nothing(slow_api, api_s3):
    shutter = Shutter(slow_api.test_client())
    alice = shutter.account("alice")
    api_s3.refuse()
    response = post_upload(shutter, alice, caption="hi")
    assert_error(response, 503, "APIServiceUnavailable")
    assert count(slow_api, Photo) == 0
    assert count(slow_api, Outbox) == 0


# --- item 14: the Idempotency-Key race -------------------------------------------------


def test_an_upload_that_loses_the_idempotency_race_answers_the_winner(slow_api, s3_settings, api_s3, s3_storage):
    """Two uploads with one Idempotency-Key: the loser's original is stored
    (held by a slow S3) while the winner commits; the loser answers the
    winner's photo, and nothing it recorded (its @mention) reaches Redis."""
    winner_app = _make_app(s3_settings)  # S3 at full speed
    try:
        loser, winner = Shutter(slow_api.test_client()), Shutter(winner_app.test_client())
        alice, bob = loser.account("alice"), loser.account("bob")
        key = {"Idempotency-Key": "one-photo"}
        api_s3.hold()
        request = InThread(lambda: post_upload(loser, alice, headers=key, caption="for @bob"))
        wait_for_held_put(api_s3)
        won = post_upload(winner, alice, headers=key, caption="for @bob")
        assert won.status_code == 202, won.get_data(as_text=True)
        api_s3.forward()
        lost = request.join()
        assert lost.status_code == 202, lost.get_data(as_text=True)
        assert lost.json["data"]["id"] == won.json["data"]["id"]

        redis = slow_api.extensions["shutter"].redis
        published = {int(m) for m in redis.zrange(f"activity:{bob.id}", 0, -1) if int(m)}
        with slow_api.extensions["shutter"].db.session() as session:
            rows = set(session.scalars(select(Activity.id).where(Activity.user_id == int(bob.id))))
        assert published <= rows and len(rows) == 1
        assert count(slow_api, Photo) == 1
        # The loser's original went; the winner's stays.
        winner_id = won.json["data"]["id"].split("_")[0]
        assert [k.rsplit("/", 1)[1].split(".")[0] for k in originals(s3_storage)] == [winner_id]
    finally:
        winner_app.extensions["shutter"].close()


def test_a_lost_race_whose_original_cannot_be_deleted_promises_its_removal(
        slow_api, s3_settings, api_s3, s3_storage, worker_process):
    """As above, but the storage dies right after the loser stored its original: its
    removal is promised through the outbox, and a worker does it once S3 answers."""
    worker = worker_process(s3_settings).start()  # its own S3 is fine
    winner_app = _make_app(s3_settings)
    engine = slow_api.extensions["shutter"].db.engine

    def refuse_s3_at_the_losers_insert(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("INSERT INTO PHOTOS"):
            api_s3.refuse()

    try:
        loser, winner = Shutter(slow_api.test_client()), Shutter(winner_app.test_client())
        alice = loser.account("alice")
        key = {"Idempotency-Key": "one-photo"}
        api_s3.hold()
        request = InThread(lambda: post_upload(loser, alice, headers=key))
        wait_for_held_put(api_s3)
        won = post_upload(winner, alice, headers=key)
        assert won.status_code == 202, won.get_data(as_text=True)
        event.listen(engine, "before_cursor_execute", refuse_s3_at_the_losers_insert)
        api_s3.forward()
        lost = request.join()
        assert lost.status_code == 202 and lost.json["data"]["id"] == won.json["data"]["id"]
        winner_id = won.json["data"]["id"].split("_")[0]
        # The loser's original is gone: the promised task deleted it.
        wait_until(lambda: [k.rsplit("/", 1)[1].split(".")[0] for k in originals(s3_storage)] == [winner_id],
                   what="the loser's original to be removed", worker=worker)
        with slow_api.extensions["shutter"].db.session() as session:
            kinds = session.scalars(select(Outbox.kind).where(Outbox.kind == "tasks.media.delete_files")).all()
        assert kinds == ["tasks.media.delete_files"]
    finally:
        if event.contains(engine, "before_cursor_execute", refuse_s3_at_the_losers_insert):
            event.remove(engine, "before_cursor_execute", refuse_s3_at_the_losers_insert)
        winner_app.extensions["shutter"].close()
