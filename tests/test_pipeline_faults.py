"""The upload pipeline under failure, with REAL Celery workers (issue 3).

Storage is S3 on moto. The worker reaches it through a FaultProxy (the API
process and the test talk to moto directly), so a test can make S3 hang or
die for the worker alone; the broker outage puts a FaultProxy between the API
and the broker. Each test shows that the photo still becomes `ready` (or,
for a file that is not an image, `failed` with a reason, once).
"""
from __future__ import annotations

import dataclasses
import io
import socket
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from app import create_app
from app.config import Settings
from app.media import pipeline
from models import Outbox, Photo
from tests import images
from tests.faults import FaultProxy
from tests.support import Shutter

DEADLINE = 30.0  # seconds for a photo to reach its final state
# Retries come within a couple of seconds (see tasks/media.py).
FAST_RETRIES = {"PHOTO_RETRY_BACKOFF_SECONDS": "1", "PHOTO_RETRY_BACKOFF_MAX_SECONDS": "2"}


# --- fixtures ----------------------------------------------------------------


@pytest.fixture
def s3_settings(settings, s3_storage, moto_s3_url) -> Settings:
    """The test's settings with photos in a fresh moto bucket."""
    return dataclasses.replace(settings, storage_backend="s3", s3_bucket=s3_storage.bucket,
                               s3_prefix=s3_storage.prefix, s3_endpoint_url=moto_s3_url)


@pytest.fixture
def s3_proxy(moto_s3_url):
    """The worker's way to S3."""
    parts = urlsplit(moto_s3_url)
    with FaultProxy(parts.hostname, parts.port) as proxy:
        yield proxy


@pytest.fixture
def worker_settings(s3_settings, s3_proxy) -> Settings:
    return dataclasses.replace(s3_settings, s3_endpoint_url=s3_proxy.url_for("http"))


def _make_app(settings: Settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def api(s3_settings):
    app = _make_app(s3_settings)
    yield app
    app.extensions["shutter"].close()


@pytest.fixture
def shutter(api) -> Shutter:
    return Shutter(api.test_client())


# --- helpers -------------------------------------------------------------------


def upload(shutter: Shutter, account, data: bytes | None = None) -> int:
    data = data or images.jpeg(1600, 1200)
    response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(data), "photo.jpg")})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.json["data"]["status"] == "processing"
    return int(response.json["data"]["id"].split("_")[0])


def row(app, photo_id: int) -> Photo:
    with app.extensions["shutter"].db.session() as session:
        photo = session.get(Photo, photo_id)
        assert photo is not None
        return photo


def wait_until(predicate, timeout: float = DEADLINE, what: str = "condition", worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if worker is not None and not worker.alive():
            raise AssertionError(f"the worker died while waiting for {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_for_status(app, photo_id: int, status: str, worker=None, timeout: float = DEADLINE) -> Photo:
    photo = wait_until(lambda: (p := row(app, photo_id)).status != "processing" and p,
                       timeout, f"photo {photo_id} to leave processing", worker)
    assert photo.status == status, (photo.status, photo.failure_reason)
    return photo


def assert_ready_everywhere(shutter: Shutter, account, app, photo_id: int, s3_storage) -> None:
    """Ready through the API too, with four metadata-free derivatives in S3."""
    media = shutter.get(f"/v1/media/{photo_id}", account).json["data"]
    assert media["status"] == "ready" and media["blurhash"]
    assert {name: (i["width"], i["height"]) for name, i in media["images"].items()} == {
        "thumbnail": (150, 150), "low_resolution": (320, 240),
        "standard_resolution": (640, 480), "high_resolution": (1080, 810)}
    for derivative in row(app, photo_id).derivatives.values():
        images.assert_no_metadata(s3_storage.get(derivative["key"]))
    assert shutter.get("/v1/users/self", account).json["data"]["counts"]["media"] == 1


# --- the fault proxy itself --------------------------------------------------------


@pytest.fixture
def echo_server():
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn):
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except ConnectionError:
                pass

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def test_fault_proxy_forward_hold_refuse(echo_server):
    with FaultProxy("127.0.0.1", echo_server) as proxy:
        assert proxy.url_for("redis", path="/0") == f"redis://127.0.0.1:{proxy.port}/0"
        with socket.create_connection(proxy.address, timeout=2) as conn:
            conn.sendall(b"ping")
            assert conn.recv(10) == b"ping"
            proxy.hold()
            conn.sendall(b"held")
            conn.settimeout(0.3)
            with pytest.raises(socket.timeout):
                conn.recv(10)
            proxy.forward()  # what was held is delivered
            conn.settimeout(2)
            assert conn.recv(10) == b"held"
            proxy.refuse()
            with pytest.raises(OSError):  # reset, or closed
                conn.sendall(b"x" * 100_000)
                if not conn.recv(10):
                    raise ConnectionResetError
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(proxy.address, timeout=2)
        port = proxy.port
        proxy.forward()
        assert proxy.port == port
        with socket.create_connection(proxy.address, timeout=2) as conn:
            conn.sendall(b"back")
            assert conn.recv(10) == b"back"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


# --- the pipeline with a real worker --------------------------------------------------


def test_worker_makes_the_photo_ready(api, shutter, worker_process, worker_settings, s3_storage):
    worker = worker_process(worker_settings).start()
    alice = shutter.account("alice")
    photo_id = upload(shutter, alice)
    photo = wait_for_status(api, photo_id, "ready", worker)
    assert photo.attempts == 1
    assert_ready_everywhere(shutter, alice, api, photo_id, s3_storage)


def test_killed_worker_mid_task_the_photo_still_becomes_ready(
        api, shutter, worker_process, worker_settings, s3_proxy, s3_storage):
    worker = worker_process(worker_settings).start()
    alice = shutter.account("alice")
    s3_proxy.hold()  # the task will hang reading the original from S3
    photo_id = upload(shutter, alice)
    wait_until(lambda: row(api, photo_id).attempts >= 1, what="the task to start", worker=worker)
    wait_until(lambda: s3_proxy.connections >= 1, what="the task to reach S3", worker=worker)
    time.sleep(0.3)
    assert row(api, photo_id).status == "processing"
    killed = worker.kill_pool_child()
    s3_proxy.forward()
    photo = wait_for_status(api, photo_id, "ready", worker)
    # The message went back to the queue (acks_late + reject_on_worker_lost)
    # and a new pool child ran it again.
    assert photo.attempts == 2
    assert killed not in worker.pool_pids()
    assert_ready_everywhere(shutter, alice, api, photo_id, s3_storage)


def test_a_photo_that_keeps_killing_its_worker_is_failed(api, shutter, worker_process, worker_settings, s3_proxy):
    """Each run dies (as an OOM kill would): after MAX_ATTEMPTS runs the photo
    is failed with a reason instead of being redelivered forever."""
    worker = worker_process(worker_settings).start()
    alice = shutter.account("alice")
    s3_proxy.hold()
    photo_id = upload(shutter, alice)
    for attempt in range(1, pipeline.MAX_ATTEMPTS + 1):
        wait_until(lambda: row(api, photo_id).attempts >= attempt and s3_proxy.connections >= 1,
                   what=f"run {attempt} to reach S3", worker=worker)
        worker.kill_pool_child()
        wait_until(lambda: s3_proxy.connections == 0, what="the killed run's connection to close")
    s3_proxy.forward()
    photo = wait_for_status(api, photo_id, "failed", worker)
    assert photo.attempts == pipeline.MAX_ATTEMPTS
    assert str(pipeline.MAX_ATTEMPTS) in photo.failure_reason


def test_s3_outage_is_retried_with_backoff(api, shutter, worker_process, worker_settings, s3_proxy, s3_storage):
    worker = worker_process(worker_settings, extra_env=FAST_RETRIES).start()
    alice = shutter.account("alice")
    s3_proxy.refuse()
    photo_id = upload(shutter, alice)  # the API's own S3 is fine
    # More task retries than pipeline.MAX_ATTEMPTS: a remote outage is not a
    # photo that keeps killing its worker, and must not fail it.
    worker.wait_for_log("Retry in", timeout=60, count=pipeline.MAX_ATTEMPTS)
    assert row(api, photo_id).status == "processing"
    s3_proxy.forward()
    wait_for_status(api, photo_id, "ready", worker)
    assert_ready_everywhere(shutter, alice, api, photo_id, s3_storage)


def test_s3_outage_longer_than_the_retries_is_left_to_the_sweeper(
        api, shutter, worker_process, worker_settings, s3_proxy, s3_storage):
    worker = worker_process(worker_settings, extra_env=FAST_RETRIES).start()
    alice = shutter.account("alice")
    s3_proxy.refuse()
    photo_id = upload(shutter, alice)
    # The task runs out of retries (max_retries of tasks/media.py)...
    worker.wait_for_log("left to the sweeper", timeout=45)
    time.sleep(0.5)
    photo = row(api, photo_id)
    # ... and the photo is not failed for it: it waits for the sweeper.
    assert photo.status == "processing", photo.failure_reason
    assert photo.attempts == 0  # no run died: none counts toward MAX_ATTEMPTS
    s3_proxy.forward()
    services = api.extensions["shutter"]
    with services.db.session() as session:
        assert pipeline.sweep(session, services.celery, stuck_after=timedelta(0))["stuck"] == 1
    wait_for_status(api, photo_id, "ready", worker)
    assert_ready_everywhere(shutter, alice, api, photo_id, s3_storage)


@pytest.mark.parametrize("outage", ["refuse", "hold"])
def test_broker_outage_between_commit_and_enqueue(outage, s3_settings, worker_process, worker_settings):
    """The broker dies (refuse) or hangs (hold) after the upload's commit."""
    broker = urlsplit(s3_settings.broker_url)
    with FaultProxy(broker.hostname, broker.port) as broker_proxy:
        userinfo = broker.netloc.rpartition("@")[0]
        proxied = broker_proxy.url_for(broker.scheme, f"{userinfo}@" if userinfo else "", broker.path)
        app = _make_app(dataclasses.replace(s3_settings, celery_broker_url=proxied))
        try:
            worker = worker_process(worker_settings).start()  # the worker's broker is fine
            shutter = Shutter(app.test_client())
            alice = shutter.account("alice")
            # The broker works, then dies between two uploads.
            first = upload(shutter, alice)
            wait_for_status(app, first, "ready", worker)
            getattr(broker_proxy, outage)()
            started = time.monotonic()
            photo_id = upload(shutter, alice)
            # Publishing after the commit gives up quickly: a dead broker
            # refuses at once, a hung one within its socket timeouts.
            assert time.monotonic() - started < (2 if outage == "refuse" else 10), \
                f"the upload waited {time.monotonic() - started:.1f}s for the broker"
            services = app.extensions["shutter"]
            with services.db.session() as session:
                outbox = session.scalars(select(Outbox).where(Outbox.photo_id == photo_id)).all()
                assert [(r.kind, r.delivered_at is None, r.attempts) for r in outbox] == [
                    ("process_photo", True, 1)]
            time.sleep(1)
            assert row(app, photo_id).status == "processing"
            # The broker is back; the sweeper publishes what was promised.
            broker_proxy.forward()
            with services.db.session() as session:
                result = pipeline.sweep(session, services.celery, outbox_grace=timedelta(0))
            assert result["outbox"] >= 1
            wait_for_status(app, photo_id, "ready", worker)
            with services.db.session() as session:
                assert session.scalar(select(Outbox.delivered_at).where(
                    Outbox.photo_id == photo_id, Outbox.kind == "process_photo")) is not None
            # A hung broker may still deliver the publish it held once it
            # recovers: then the photo is processed twice, harmlessly.
            assert row(app, photo_id).attempts == 1 if outage == "refuse" else 1 <= row(app, photo_id).attempts <= 2
        finally:
            app.extensions["shutter"].close()


def test_sweeper_republishes_a_photo_whose_message_is_gone(api, shutter, worker_process, worker_settings):
    worker = worker_process(worker_settings)
    alice = shutter.account("alice")
    photo_id = upload(shutter, alice)
    assert worker.purge() >= 1  # the message is lost (a broker that lost its queue, …)
    worker.start(purge=False)
    time.sleep(1.5)
    assert row(api, photo_id).status == "processing" and row(api, photo_id).attempts == 0
    services = api.extensions["shutter"]
    with services.db.session() as session:
        # Not stuck yet by the default rule: nothing happens.
        assert pipeline.sweep(session, services.celery) == {"outbox": 0, "stuck": 0}
        assert pipeline.sweep(session, services.celery, stuck_after=timedelta(0)) == {"outbox": 0, "stuck": 1}
    wait_for_status(api, photo_id, "ready", worker)


def test_corrupt_original_fails_once_with_a_reason(api, shutter, worker_process, worker_settings, s3_storage):
    worker = worker_process(worker_settings)
    alice = shutter.account("alice")
    worker.purge()
    photo_id = upload(shutter, alice)
    # The stored original turns out not to be an image (bit rot, a bad
    # client that the cheap upload checks let through, …).
    s3_storage.put(row(api, photo_id).original_key, b"\xff\xd8\xff\xe0" + b"\x00garbage" * 500, "image/jpeg")
    worker.start(purge=False)
    photo = wait_for_status(api, photo_id, "failed", worker)
    assert photo.failure_reason
    assert photo.attempts == 1  # not retried
    time.sleep(1)
    assert row(api, photo_id).attempts == 1
    assert "Retry in" not in worker.log()
    media = shutter.get(f"/v1/media/{photo_id}", alice).json["data"]
    assert media["status"] == "failed" and media["images"] == {}
    assert shutter.get("/v1/users/self", alice).json["data"]["counts"]["media"] == 0


def test_delete_while_s3_is_down_removes_the_files_later(s3_settings, worker_process, s3_storage, moto_s3_url):
    """The API's S3 dies between the commit and the file deletion: the photo is
    gone at once, and a task deletes its files (public derivatives, and the
    original with its GPS) once S3 answers."""
    parts = urlsplit(moto_s3_url)
    with FaultProxy(parts.hostname, parts.port) as api_s3:
        app = _make_app(dataclasses.replace(s3_settings, s3_endpoint_url=api_s3.url_for("http")))
        try:
            shutter = Shutter(app.test_client())
            alice = shutter.account("alice")
            worker = worker_process(s3_settings, extra_env=FAST_RETRIES).start()  # the worker's S3 is fine
            photo_id = upload(shutter, alice)
            photo = wait_for_status(app, photo_id, "ready", worker)
            keys = [photo.original_key, *(d["key"] for d in photo.derivatives.values())]
            assert all(s3_storage.exists(key) for key in keys)

            api_s3.refuse()
            started = time.monotonic()
            response = shutter.delete(f"/v1/media/{photo_id}", alice)
            assert response.status_code == 200, response.json
            assert time.monotonic() - started < 10
            assert shutter.get(f"/v1/media/{photo_id}", alice).status_code == 404
            wait_until(lambda: not any(s3_storage.exists(key) for key in keys),
                       what="the worker to delete the files", worker=worker)
        finally:
            app.extensions["shutter"].close()
