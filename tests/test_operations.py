"""Issue 15 items 3–7: request ids through logs and tasks, JSON logs, Sentry with the
request id, the operator commands, the process layout files, cheap and deep health.

Real components throughout: a real Celery worker subprocess (tests/workers.py) whose
log is read, the stack's broker (Redis embedded, RabbitMQ on production), a local
HTTP endpoint as the Sentry DSN (tests/test_sentry.py's), honcho, systemd-analyze, nginx.
"""
from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sentry_sdk
from sqlalchemy import select, update

from app.config import ROOT
from app.platform import keys
from app.platform.logging import bind_request_id, json_formatter, reset_request_id
from models import Outbox, Photo, utcnow
from tests.callbacks import CallbackServer, closed_port
from tests.images import jpeg
from tests.support import Shutter
from tests.test_subscriptions import LOOPBACK, subscribed
from tests.test_sentry import events_sent, sentry  # noqa: F401 - the fixture, for the test below

DEADLINE = 60


def wait_until(predicate, what: str, timeout: float = DEADLINE, worker=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{worker.log()}" if worker else ""))


def upload(shutter: Shutter, account, request_id: str | None = None):
    headers = {"X-Request-Id": request_id} if request_id else {}
    return shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(jpeg(320, 240)), "p.jpg")},
                        headers=headers)


def photo_status(app, photo_id: int) -> str:
    with app.extensions["shutter"].db.session() as session:
        return session.scalar(select(Photo.status).where(Photo.id == photo_id))


# -- request ids --------------------------------------------------------------------

def test_the_response_carries_the_clients_request_id_or_one_made_for_it(client):
    assert client.get("/healthz", headers={"X-Request-Id": "lb-1234.abc"}).headers["X-Request-Id"] == "lb-1234.abc"
    made = client.get("/healthz").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    for bad in ("x" * 65, "has space", "<script>", "-leading-dash", "a\u00e9"):
        answered = client.get("/healthz", headers={"X-Request-Id": bad}).headers["X-Request-Id"]
        assert answered != bad and re.fullmatch(r"[0-9a-f]{32}", answered), bad


def _log_lines_with(worker, request_id: str) -> list[str]:
    return [line for line in worker.log().splitlines() if request_id in line]


def test_an_uploads_request_id_is_on_its_tasks_log_lines_in_a_real_worker(app, settings, worker_process, shutter):
    worker = worker_process(settings, queues="media,feed,search,io,default").start()
    alice, bob = shutter.account("alice"), shutter.account("bob")
    assert shutter.relate(bob, alice, "follow").status_code == 200
    response = upload(shutter, alice, "upload-trace-42")
    assert response.status_code == 202 and response.headers["X-Request-Id"] == "upload-trace-42"
    photo_id = int(response.json["data"]["id"].split("_")[0])
    # The chain's tasks and the group publish_photo sends: each one's success line carries the id.
    for name in ("tasks.media.process_photo", "tasks.media.publish_photo", "tasks.feeds.fan_out"):
        wait_until(lambda: any(name in line and "succeeded" in line for line in _log_lines_with(worker, "upload-trace-42")),
                   f"{name}'s line with the request id", worker=worker)
    assert photo_status(app, photo_id) == "ready"
    assert all(line.endswith("request_id=upload-trace-42") for line in _log_lines_with(worker, "upload-trace-42"))
    # Another request's tasks carry its own id, not this one's.
    second = upload(shutter, alice)
    other = second.headers["X-Request-Id"]
    wait_until(lambda: any("publish_photo" in line for line in _log_lines_with(worker, other)), "the second id",
               worker=worker)


def test_json_logs_parse_and_carry_the_request_id_in_the_worker_and_the_api(make_app, settings, worker_process):
    import dataclasses

    json_settings = dataclasses.replace(settings, log_format="json")
    worker = worker_process(json_settings, queues="media,feed,search,io,default").start()
    app = make_app(log_format="json")

    @app.get("/test-logs")
    def test_logs():
        logging.getLogger("shutter.test").info("calling back with access_token=sekrit-123 now")
        return {"ok": True}

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        app.test_client().get("/test-logs", headers={"X-Request-Id": "json-req-1"})
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    api_line = json.loads(next(line for line in stream.getvalue().splitlines() if "calling back" in line))
    assert api_line["request_id"] == "json-req-1" and api_line["logger"] == "shutter.test"
    assert "sekrit-123" not in api_line["message"] and "[redacted]" in api_line["message"]

    shutter = Shutter(app.test_client())
    alice = shutter.account("alice")
    response = upload(shutter, alice, "json-upload-7")
    assert response.status_code == 202

    def parsed():
        lines = []
        for line in worker.log().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))  # every JSON line parses
        return lines

    wait_until(lambda: any(entry.get("request_id") == "json-upload-7" and "publish_photo" in entry["message"]
                           and "succeeded" in entry["message"] for entry in parsed()),
               "a JSON line of publish_photo with the request id", worker=worker)
    assert any(entry.get("level") == "INFO" for entry in parsed())


def json_lines(worker) -> list[dict]:
    return [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]


def test_json_lines_of_a_task_name_it_on_prefork_and_gevent_workers(make_app, worker_process):
    """LOG_FORMAT=json: a line logged while a task runs carries its task_id and task_name, Celery's
    own and a library's (httpx's POST, in a greenlet of the io worker's gevent pool), as does the
    worker's `received` line; the request id stays beside them; a line of no task has neither."""
    app = make_app(log_format="json", subscription_callback_allowed_networks=LOOPBACK)
    settings = app.extensions["shutter"].settings
    shutter = Shutter(app.test_client())
    alice = shutter.account("alice")
    with CallbackServer() as callback:
        subscribed(shutter, object="user", callback_url=callback.url())
        media = worker_process(settings, queues="media,feed,search,default").start()
        io_worker = worker_process(settings, queues="io", pool="gevent", concurrency=5).start(purge=False)
        assert upload(shutter, alice, "json-task-9").status_code == 202
        posted = wait_until(lambda: [line for line in json_lines(io_worker) if "HTTP Request: POST" in line["message"]],
                            "the callback's POST in the io worker's log", worker=io_worker)
    post = posted[0]
    assert post["task_name"] == "tasks.realtime.deliver" and post["request_id"] == "json-task-9"
    received = [line for line in json_lines(io_worker) if line["message"].endswith(" received")
                and line.get("task_name") == "tasks.realtime.deliver"]
    assert [line["task_id"] for line in received] == [post["task_id"]]
    assert f"tasks.realtime.deliver[{post['task_id']}] received" in received[0]["message"]

    for name in ("tasks.media.process_photo", "tasks.media.publish_photo", "tasks.realtime.notify_subscribers"):
        worker = io_worker if name.startswith("tasks.realtime") else media
        done = wait_until(lambda: [line for line in json_lines(worker)
                                   if line.get("task_name") == name and "succeeded" in line["message"]],
                          f"{name}'s success line", worker=worker)
        assert len(done) == 1 and done[0]["request_id"] == "json-task-9"
        assert f"{name}[{done[0]['task_id']}] succeeded" in done[0]["message"]
    ready = next(line for line in json_lines(media) if line["message"].endswith(" ready."))
    assert "task_id" not in ready and "task_name" not in ready


# -- Sentry ----------------------------------------------------------------------------

def _events(raw: bytes) -> list[dict]:
    return [json.loads(line) for line in raw.split(b"\n")
            if line.startswith(b"{") and b'"exception"' in line]


def test_errors_from_a_route_and_a_task_reach_sentry_scrubbed_with_the_request_id(
        make_app, settings, sentry, worker_process):  # noqa: F811 - the fixture
    import dataclasses

    app = make_app(sentry_dsn=sentry.dsn)

    from flask import request

    @app.get("/test-boom")
    def boom():
        token = request.args["access_token"]  # noqa: F841 - a local Sentry sends, scrubbed
        raise RuntimeError("boom in a route")

    secret = "route-secret-" + "token-1"  # so that the frames' source lines do not hold it
    response = app.test_client().get(f"/test-boom?access_token={secret}", headers={"X-Request-Id": "sentry-route-1"})
    assert response.status_code == 500
    route_events = _events(events_sent(sentry))
    assert any(e["tags"].get("request_id") == "sentry-route-1" for e in route_events)
    assert secret.encode() not in b"\n".join(sentry.envelopes)

    sentry.envelopes.clear()
    sentry.received.clear()
    worker = worker_process(dataclasses.replace(settings, sentry_dsn=sentry.dsn), queues="media").start()
    task_secret = "task-secret-" + "token-2"
    token = bind_request_id("sentry-task-2")
    try:
        # A task that fails: delete_files does not take these arguments (a TypeError, not retried).
        app.extensions["shutter"].celery.send_task(
            "tasks.media.delete_files", kwargs={"keys": [], "access_token": task_secret}, queue="media")
    finally:
        reset_request_id(token)
    wait_until(lambda: sentry.received.is_set(), "the task's event at the Sentry endpoint", worker=worker)
    wait_until(lambda: any(e["tags"].get("request_id") == "sentry-task-2"
                           for e in _events(b"\n".join(sentry.envelopes))),
               "the task's event with the request id tag", worker=worker)
    raw = b"\n".join(sentry.envelopes)
    assert b"TypeError" in raw and b"delete_files" in raw
    assert task_secret.encode() not in raw
    sentry_sdk.init()


# -- commands --------------------------------------------------------------------------

def run(app, *args, input=None):
    result = app.test_cli_runner().invoke(args=["shutter", *args], input=input, catch_exceptions=False)
    return result


def test_create_user_then_log_in_through_the_api(app, shutter):
    result = run(app, "create-user", "carol", "carol@example.com", "--private", "--password-stdin",
                 input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "Created user carol" in result.output
    login = shutter.login("carol", password="a long enough password")
    assert login.status_code == 200, login.json
    assert login.json["user"]["username"] == "carol"
    token = login.json["access_token"]
    me = shutter.client.get("/v1/users/self", query_string={"access_token": token}).json["data"]
    assert me["username"] == "carol"
    again = run(app, "create-user", "carol", "other@example.com", "--password-stdin", input="another password\n")
    assert again.exit_code == 1 and "username is taken" in again.output
    short = run(app, "create-user", "dave", "dave@example.com", "--password-stdin", input="short\n")
    assert short.exit_code == 2


def _demo_login(output: str):
    client_id = re.search(r"client_id=(\w+)", output).group(1)
    secret = re.search(r"client_secret=(\w+)", output).group(1)
    users = re.search(r"Log in as any of ([\w, ]+) with the password '([^']+)'", output)
    return {"client_id": client_id, "client_secret": secret}, users.group(1).split(", "), users.group(2)


def _counts(app) -> dict:
    from sqlalchemy import func

    from models import Comment, Follow, Like, User
    with app.extensions["shutter"].db.session() as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (User, Follow, Photo, Like, Comment)}


def test_demo_data_is_browsable_through_the_api_and_running_it_twice_changes_nothing(app, shutter):
    result = run(app, "demo", "--users", "4", "--photos", "2")
    assert result.exit_code == 0, result.output
    counts = _counts(app)
    assert counts == {"User": 4, "Follow": 12, "Photo": 8, "Like": 8, "Comment": 4}, counts
    client, users, password = _demo_login(result.output)
    again = run(app, "demo", "--users", "4", "--photos", "2")
    assert again.exit_code == 0, again.output
    assert _counts(app) == counts
    assert "new this run: 0 photos, 0 follows, 0 likes, 0 comments" in again.output
    assert _demo_login(again.output)[0] == client

    login = shutter.login(users[0], password=password, client=client)
    assert login.status_code == 200, login.json
    token = login.json["access_token"]
    feed = shutter.client.get("/v1/users/self/feed", query_string={"access_token": token})
    assert feed.status_code == 200
    authors = {item["user"]["username"] for item in feed.json["data"]}
    assert len(feed.json["data"]) == 8 and authors == set(users)  # own + the three followed, 2 each
    assert all(item["status"] == "ready" if "status" in item else True for item in feed.json["data"])
    liked = [item for item in feed.json["data"] if item["likes"]["count"]]
    assert liked and any(item["comments"]["count"] for item in feed.json["data"])


def test_rebuild_feeds_restores_a_lost_feed(app):
    assert run(app, "demo", "--users", "3", "--photos", "1").exit_code == 0
    services = app.extensions["shutter"]
    with services.db.session() as session:
        from app.accounts.registration import find_user
        user_id = find_user(session, "demo01").id
    key = keys.FEED + str(user_id)
    before = services.redis.zrange(key, 0, -1)
    services.redis.delete(key)
    services.redis.zadd(key, {"999999": 999999.0})  # an entry that should not be there
    result = run(app, "rebuild-feeds", "--user", "demo01")
    assert result.exit_code == 0 and "Rebuilt 1 feeds" in result.output, result.output
    built = "0"  # the marker of a feed built from the database (app.feeds.manager)
    after = services.redis.zrange(key, 0, -1)
    assert set(after) - {built} == set(before) - {built} and len(set(before) - {built}) == 3
    assert "999999" not in after
    everyone = run(app, "rebuild-feeds")
    assert "Rebuilt 3 feeds" in everyone.output
    assert run(app, "rebuild-feeds", "--user", "nobody").exit_code == 1


def test_reprocess_photos_republishes_failed_ones_through_the_outbox(app, settings, worker_process):
    assert run(app, "demo", "--users", "2", "--photos", "1").exit_code == 0
    services = app.extensions["shutter"]
    with services.db.session() as session:
        photo_id = session.scalars(select(Photo.id)).first()
        session.execute(update(Photo).where(Photo.id == photo_id)
                        .values(status="failed", failure_reason="test", attempts=6, derivatives=None))
        session.commit()
    worker = worker_process(settings, queues="media,feed,search,io,default").start()
    result = run(app, "reprocess-photos", "--status", "failed")
    assert result.exit_code == 0 and "Re-published 1 failed photos" in result.output, result.output
    with services.db.session() as session:
        row = session.scalars(select(Outbox).where(Outbox.photo_id == photo_id, Outbox.kind == "process_photo")
                              .order_by(Outbox.id.desc())).first()
        assert row is not None and row.delivered_at is not None
    wait_until(lambda: photo_status(app, photo_id) == "ready", "the reprocessed photo to be ready", worker=worker)


def test_queues_reports_depths_on_the_stacks_broker_and_the_outbox(app, stack):
    celery = app.extensions["shutter"].celery
    with celery.connection_for_write() as connection:
        celery.control.purge(connection=connection)
    for _ in range(3):
        celery.send_task("tasks.search.index_photo", args=(1,))
    result = run(app, "queues")
    assert result.exit_code == 0, result.output
    assert re.search(r"^queue search\s+3$", result.output, re.M), result.output
    assert re.search(r"^queue media\s+0$", result.output, re.M)
    assert "outbox pending 0" in result.output and "oldest processing photo none" in result.output
    broker = "amqp" if stack["celery_broker_url"].startswith("amqp") else "redis"
    assert celery.conf.broker_url.startswith(broker)
    with celery.connection_for_write() as connection:
        celery.control.purge(connection=connection)


def test_sweep_runs_the_sweeper_once(app, shutter):
    alice = shutter.account("alice")
    services = app.extensions["shutter"]
    # An outbox row the broker never got (older than the sweeper's grace): the sweep publishes it.
    with services.db.session() as session:
        row = Outbox(kind="tasks.search.remove_photo", payload={"photo_id": 1})
        session.add(row)
        session.commit()
        session.execute(update(Outbox).values(created_at=utcnow() - _minutes(5)))
        session.commit()
    result = run(app, "sweep")
    assert result.exit_code == 0, result.output
    assert "outbox=1" in result.output, result.output
    with services.db.session() as session:
        assert session.scalar(select(Outbox.delivered_at)) is not None
    assert alice


def _purge(celery) -> None:
    with celery.connection_for_write() as connection:
        celery.control.purge(connection=connection)


def _next_message_headers(celery, queue: str) -> dict | None:
    """The headers of the next message waiting in `queue` (taken off it), or None."""
    with celery.connection_for_read() as connection:
        message = celery.amqp.queues[queue](connection.default_channel).get(no_ack=True)
        return dict(message.headers) if message is not None else None


def test_a_row_the_sweeper_publishes_carries_the_uploads_request_id(app, make_app, shutter, settings):
    """The broker refused the upload's publish after its commit: `shutter sweep` publishes the
    process_photo row minutes later, and the task's headers carry the upload's request id."""
    broker = urlsplit(settings.broker_url)
    down = Shutter(make_app(celery_broker_url=broker._replace(
        netloc=broker.netloc.replace(f":{broker.port}", f":{closed_port()}")).geturl()).test_client())
    celery = app.extensions["shutter"].celery
    _purge(celery)
    alice = shutter.account("alice")
    response = upload(down, alice, "swept-later-5")
    assert response.status_code == 202, response.get_data(as_text=True)
    photo_id = int(response.json["data"]["id"].split("_")[0])
    services = app.extensions["shutter"]
    with services.db.session() as session:
        row = session.scalars(select(Outbox).where(Outbox.photo_id == photo_id)).one()
        assert (row.kind, row.delivered_at, row.request_id) == ("process_photo", None, "swept-later-5")
        session.execute(update(Outbox).values(created_at=utcnow() - _minutes(5)))
        session.commit()
    assert _next_message_headers(celery, "media") is None  # the broker never got it
    try:
        result = run(app, "sweep")
        assert result.exit_code == 0, result.output
        assert "outbox=1" in result.output, result.output
        headers = wait_until(lambda: _next_message_headers(celery, "media"), "the swept row's task in `media`")
        assert headers["task"] == "tasks.media.process_photo"
        assert headers["request_id"] == "swept-later-5"
    finally:
        _purge(celery)


def _minutes(n):
    from datetime import timedelta
    return timedelta(minutes=n)


def test_the_shutter_script_lists_the_commands():
    result = subprocess.run([str(ROOT / "shutter"), "--help"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    for command in ("create-user", "demo", "rebuild-feeds", "reprocess-photos", "queues", "sweep",
                    "reindex-search"):
        assert command in result.stdout


# -- health ----------------------------------------------------------------------------

def test_healthz_is_cheap_and_deep_checks_the_backlog(make_app):
    app = make_app(health_max_outbox_age_seconds=60, health_max_queue_depth=2)
    client = app.test_client()
    cheap = client.get("/healthz")
    assert cheap.status_code == 200 and set(cheap.json["data"]) == {"database", "redis", "broker", "storage", "cache",
                                                                    "push", "sharing"}
    deep = client.get("/healthz?deep=1")
    assert deep.status_code == 200, deep.json
    assert deep.json["data"]["queues"] == "ok" and deep.json["data"]["outbox"] == "ok"
    assert set(deep.json["data"]["queue_depths"]) == {"media", "feed", "io", "search", "default"}
    assert client.get("/readyz").json == client.get("/healthz?deep=1").json

    services = app.extensions["shutter"]
    with services.db.session() as session:
        session.add(Outbox(kind="tasks.search.remove_photo", payload={"photo_id": 1}))
        session.commit()
        assert client.get("/readyz").status_code == 200  # a fresh row: published any moment
        session.execute(update(Outbox).values(created_at=utcnow() - _minutes(2)))
        session.commit()
    old = client.get("/readyz")
    assert old.status_code == 503 and old.json["data"]["outbox"].startswith("behind")
    assert old.json["meta"]["error_type"] == "APIServiceUnavailable" and "outbox" in old.json["meta"]["error_message"]
    assert client.get("/healthz").status_code == 200  # the cheap check does not look at the backlog

    with services.db.session() as session:
        session.execute(update(Outbox).values(delivered_at=Outbox.created_at))
        session.commit()
    celery = services.celery
    with celery.connection_for_write() as connection:
        celery.control.purge(connection=connection)
    for _ in range(3):
        celery.send_task("tasks.search.index_photo", args=(1,))
    full = client.get("/readyz")
    assert full.status_code == 503 and full.json["data"]["queues"].startswith("backlog")
    assert full.json["data"]["queue_depths"]["search"] == 3
    with celery.connection_for_write() as connection:
        celery.control.purge(connection=connection)


def test_the_cheap_healthz_reuses_its_answer(make_app, tmp_path):
    media = tmp_path / "cheap-media"
    app = make_app(health_cache_seconds=300, media_root=str(media))
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    # The storage breaks: the media folder becomes a file, no check file can be written in it.
    shutil.rmtree(media, ignore_errors=True)
    media.write_text("not a folder")
    assert client.get("/healthz").status_code == 200  # the states of a moment ago, not checked again
    deep = client.get("/readyz")
    assert deep.status_code == 503 and deep.json["data"]["storage"].startswith("down")


# -- the process layout -----------------------------------------------------------------

def _procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def test_the_procfile_is_valid_for_honcho_and_every_command_resolves():
    honcho = Path(sys.executable).with_name("honcho")
    check = subprocess.run([str(honcho), "check", "-f", "Procfile"], cwd=ROOT, capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 0, check.stderr
    assert "Valid procfile" in check.stderr + check.stdout
    entries = _procfile()
    assert set(entries) == {"web", "media", "io", "feed", "search", "default", "beat", "flower"}
    for name, command in entries.items():
        words = [word for word in command.split() if not re.fullmatch(r"[A-Z_]+=\S*", word)]
        assert words[0] == "exec", f"{name}: honcho would signal the shell, not the process"
        executable = ROOT / words[1]
        assert executable.exists() and os.access(executable, os.X_OK), f"{name}: {executable}"
        # honcho signals the process group: a prefork pool's children ignore its SIGTERM (their
        # worker's soft shutdown ends them); a gevent worker takes it as its warm shutdown.
        if " -P prefork " in command:
            assert command.startswith("REMAP_SIGTERM=SIGQUIT "), name
        elif " -P gevent " in command:
            assert "REMAP_SIGTERM" not in command, name
    assert "-P gevent -c 200" in entries["io"] and "-Q io" in entries["io"]
    assert "--without-gossip --without-mingle" in entries["io"]  # its warm shutdown could hang with them
    assert "-P prefork" in entries["media"] and " -c " not in entries["media"]  # one per core
    assert "gunicorn wsgi:app -c gunicorn.conf.py" in entries["web"]
    # honcho runs a command with the environment it would give the processes: the app imports.
    run_check = subprocess.run([str(honcho), "-f", "Procfile", "run", ".venv/bin/python", "-c",
                                "import wsgi, worker; print(worker.celery.main)"],
                               cwd=ROOT, capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run_check.returncode == 0 and "shutter" in run_check.stdout, run_check.stderr


def test_systemd_units_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in (ROOT / "ops" / "systemd").glob("*.service"):
        text = unit.read_text()
        assert "EnvironmentFile=/etc/shutter/env" in text, unit.name
        # the units expect the code in /opt/shutter: point them at this checkout to verify the commands
        (tmp_path / unit.name).write_text(text.replace("/opt/shutter", str(ROOT)))
    units = ["shutter-web.service", "shutter-beat.service", "shutter-flower.service",
             "shutter-worker@media.service", "shutter-worker@io.service"]
    result = subprocess.run([analyze, "verify", *units], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "shutter" not in result.stderr, result.stderr  # no complaint about our units


def test_nginx_accepts_the_sample_config(tmp_path, settings):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if nginx is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nginx is not installed (scripts/test.sh installs nginx-light)")
        pytest.skip("nginx is not installed (apt-get install nginx-light; scripts/test.sh does it)")
    conf = (ROOT / "ops" / "nginx" / "shutter.conf").read_text()
    assert f"client_max_body_size {settings.max_upload_bytes // (1024 * 1024)}m;" in conf
    assert "$request_id" in conf and "keepalive" in conf
    conf = conf.replace("/var/cache/nginx/", f"{tmp_path}/cache/").replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "cache").mkdir()
    (tmp_path / "shutter.conf").write_text(conf)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n  include {tmp_path}/shutter.conf;\n}}\n")
    result = subprocess.run([nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


# -- the Procfile, run for real ------------------------------------------------------------

def _process_tree(root: int) -> dict[int, str]:
    """root's descendants now: pid -> its start time (/proc/<pid>/stat field 22), so a pid
    reused later is not mistaken for one of them."""
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                start = _start_time(child)
                if start is not None and child not in found:
                    found[child] = start
                    todo.append(child)
    return found


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _survivors(processes: dict[int, str]) -> list[str]:
    alive = []
    for pid, start in processes.items():
        if _start_time(pid) == start:
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                alive.append(f"{pid}: {command}")
            except OSError:
                continue
    return alive


def _http(method: str, url: str, **kwargs):
    import httpx

    try:
        return httpx.request(method, url, timeout=10, **kwargs)
    except httpx.TransportError:
        return None


def test_the_procfile_runs_an_upload_to_ready_and_stops_without_orphans(settings, shutter, tmp_path):
    """`honcho start -f Procfile` as `make run-production-layout` runs it, on the test's own
    database, Redis db and broker (vhost): /healthz answers, a photo uploaded through the API
    reaches ready through the workers, and on SIGTERM every process stops by itself (exit
    status 0, before honcho's SIGKILL, no pool child killed mid-task) and none is left."""
    from tests.workers import settings_env

    port, flower_port = closed_port(), closed_port()
    env = {**os.environ, **settings_env(settings), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "WEB_CONCURRENCY": "2", "FLOWER_PORT": str(flower_port),
           "CELERY_BEAT_SCHEDULE": str(tmp_path / "celerybeat-schedule")}
    for name in ("PROMETHEUS_MULTIPROC_DIR", "WORKER_METRICS_PORT"):
        env.pop(name, None)
    alice = shutter.account("alice")  # through the test's app: the same database the Procfile's use
    log_path = tmp_path / "honcho.log"
    with open(log_path, "ab") as log_file:
        # -e: an empty env file, so that a developer's .env in the checkout does not point it elsewhere
        (tmp_path / "empty.env").write_text("")
        # honcho through scripts/procfile.py, as `make run-production-layout` runs it (30 s to stop)
        process = subprocess.Popen([sys.executable, "scripts/procfile.py", "start", "-f", "Procfile",
                                    "-p", str(port), "--no-colour",
                                    "-e", str(tmp_path / "empty.env")], cwd=ROOT, env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    started: dict[int, str] = {}
    try:
        def log() -> str:
            return log_path.read_text(errors="replace")

        def healthy():
            assert process.poll() is None, f"honcho exited ({process.returncode})\n{log()}"
            response = _http("GET", f"{base}/healthz")
            return response is not None and response.status_code == 200

        wait_until(healthy, "the Procfile's web to answer /healthz", timeout=90)
        for name in ("media", "io", "feed", "search", "default"):
            wait_until(lambda: re.search(rf"{name}\.1\s+\|.* {name}@\S+ ready\.", log()),
                       f"the {name} worker to be ready", timeout=90)
        uploaded = _http("POST", f"{base}/v1/media/upload", data={"access_token": alice.token},
                         files={"photo": ("p.jpg", jpeg(320, 240), "image/jpeg")},
                         headers={"X-Request-Id": "procfile-1"})
        assert uploaded is not None and uploaded.status_code == 202, uploaded and uploaded.text
        media_id = uploaded.json()["data"]["id"]

        def ready():
            answer = _http("GET", f"{base}/v1/media/{media_id}", params={"access_token": alice.token})
            return answer is not None and answer.status_code == 200 and answer.json()["data"].get("status") == "ready"

        wait_until(ready, "the uploaded photo to reach ready through the Procfile's workers", timeout=90)
        assert "procfile-1" in log()  # the workers' lines of its tasks carry the upload's request id
        flower = _http("GET", f"http://127.0.0.1:{flower_port}/healthcheck")
        assert flower is not None and flower.status_code == 200
        started = _process_tree(process.pid)
        assert len(started) >= 8, started  # one (and its children) per Procfile line
    finally:
        started.update(_process_tree(process.pid))
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # what Ctrl-C or systemd does to honcho
        try:
            process.wait(60)
        finally:
            stopped_cleanly = process.returncode is not None
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    output = log_path.read_text(errors="replace")
    assert stopped_cleanly, output
    # Each process stopped on honcho's SIGTERM, before its SIGKILL; no pool child died mid-task.
    assert "sending SIGKILL" not in output, output
    assert "WorkerLostError" not in output and "exited with 'signal" not in output, output
    stopped = dict(re.findall(r"system\s+\| (\w+)\.1 stopped \(rc=(-?\d+)\)", output))
    assert set(stopped) == set(_procfile()) and set(stopped.values()) == {"0"}, output
    deadline = time.monotonic() + 15
    while _survivors(started) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _survivors(started), (_survivors(started), log_path.read_text(errors="replace"))
