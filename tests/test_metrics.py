"""Metrics (app/platform/metrics.py): what /metrics says after real requests, real tasks in
real workers, a real broker's queues and the outbox table; the multiprocess folder that
adds up processes; and a real Prometheus server scraping the API and a worker.

In this process prometheus_client runs single-process (no PROMETHEUS_MULTIPROC_DIR), so its
counters are shared by every test: each test compares a scrape before and after.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import update

import tasks.realtime  # noqa: F401  registers tasks.realtime.* with every Celery app
from app.config import ROOT
from app.media import pipeline
from app.platform import metrics, outbox
from app.worker import make_celery
from models import Photo
from tests import images
from tests.callbacks import CallbackServer, closed_port
from tests.metrics_scrape import Scrape, scrape_client, scrape_url
from tests.support import Shutter
from tests.test_feeds import JPEG, follow, post_photo, services_of
from tests.test_pipeline_faults import wait_until
from tests.test_subscriptions import LOOPBACK, subscribed
from tests.workers import settings_env, stop_group

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
OPS = ROOT / "ops"


@pytest.fixture
def app(make_app):
    """Callbacks to 127.0.0.1 allowed (the test's callback server); a failed delivery is retried at
    once (countdown 0), so on the io worker's gevent pool the retry starts in another greenlet
    while the run that retried is still ending: two runs of one task id at the same time."""
    return make_app(subscription_callback_allowed_networks=LOOPBACK, subscription_retry_backoff_seconds=0)


@pytest.fixture
def shutter(app) -> Shutter:
    return Shutter(app.test_client())


def upload(shutter: Shutter, account, data: bytes = JPEG, name: str = "p.jpg") -> int:
    response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(data), name)})
    assert response.status_code == 202, response.get_data(as_text=True)
    return int(response.json["data"]["id"].split("_")[0])


def delta(before: Scrape, after: Scrape, name: str, **labels) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def purge(settings) -> None:
    """Empty every queue (a connection of its own, as tests.workers.Worker.purge)."""
    celery = make_celery(settings)
    with celery.connection_for_write() as connection:
        celery.control.purge(connection=connection)


# -- counters, in-process ------------------------------------------------------------------
def test_business_counters_count_what_was_committed(shutter):
    shutter.app_client()  # its developer account signs up before the first scrape
    before = scrape_client(shutter.client)
    alice = shutter.account("alice")
    bob = shutter.account("bob")
    carol = shutter.account("carol", private=True)
    assert delta(before, scrape_client(shutter.client), "shutter_signups_total") == 3  # alice, bob, carol

    follow(shutter, bob, alice)  # public: a follow at once
    follow(shutter, alice, carol)  # private: a request
    follow(shutter, alice, carol)  # again: nothing new
    assert shutter.relate(carol, alice, "approve").status_code == 200
    photo = post_photo(shutter, alice)  # uploaded, processed and published in-process
    media_id = f"{photo}_{alice.id}"
    assert shutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200
    assert shutter.post(f"/v1/media/{media_id}/likes", bob).status_code == 200  # already liked: no like
    assert shutter.post(f"/v1/media/{media_id}/comments", bob, text="nice").status_code == 200
    png = upload(shutter, alice, images.encode(images.picture(40, 30), "PNG"), "p.png")

    after = scrape_client(shutter.client)
    assert delta(before, after, "shutter_follows_total", kind="follow") == 1
    assert delta(before, after, "shutter_follows_total", kind="request") == 1
    assert delta(before, after, "shutter_follows_total", kind="approval") == 1
    assert delta(before, after, "shutter_uploads_total", format="jpeg") == 1
    assert delta(before, after, "shutter_uploads_total", format="png") == 1
    assert delta(before, after, "shutter_photos_ready_total") == 1
    assert delta(before, after, "shutter_upload_to_ready_seconds_count") == 1
    assert delta(before, after, "shutter_likes_total") == 1
    assert delta(before, after, "shutter_comments_total") == 1
    assert delta(before, after, "shutter_fanout_deliveries_total") == 1  # bob's feed

    services = services_of(shutter)
    with services.db.session() as session:
        pipeline.mark_failed(session, png, "test: a photo that will not do", metrics.FAILED_INVALID_IMAGE)
        pipeline.mark_failed(session, png, "test: failed already: not counted again")
    final = scrape_client(shutter.client)
    assert delta(after, final, "shutter_photos_failed_total", reason="invalid_image") == 1
    assert delta(after, final, "shutter_photos_failed_total", reason="task_error") == 0
    # the requests themselves, by endpoint and status
    assert delta(before, final, "shutter_http_requests_total", method="POST",
                 endpoint="/v1/media/<media_id>/likes", status=200) == 2


def test_a_counter_counts_only_after_the_commit(shutter):
    """A rolled-back transaction counts nothing; the same one committed counts once."""
    services = services_of(shutter)
    before = scrape_client(shutter.client)
    with services.db.session() as session:
        metrics.count_after_commit(session, metrics.LIKES)
        session.execute(update(Photo).where(Photo.id == -1).values(caption="x"))
        session.rollback()
    assert delta(before, scrape_client(shutter.client), "shutter_likes_total") == 0
    with services.db.session() as session:
        metrics.count_after_commit(session, metrics.LIKES)
        assert delta(before, scrape_client(shutter.client), "shutter_likes_total") == 0  # not yet
        session.execute(update(Photo).where(Photo.id == -1).values(caption="x"))
        session.commit()
    assert delta(before, scrape_client(shutter.client), "shutter_likes_total") == 1


def test_a_signup_that_fails_counts_nothing(shutter):
    assert shutter.signup("dora").status_code == 201
    before = scrape_client(shutter.client)
    assert shutter.signup("dora").status_code == 409  # taken: its transaction rolled back
    assert delta(before, scrape_client(shutter.client), "shutter_signups_total") == 0


# -- gauges read when scraped --------------------------------------------------------------------
def test_queue_depth_is_read_from_the_broker_when_scraped(shutter, settings):
    """Messages published with no worker running wait in their queues: Redis lists on the
    embedded stack, RabbitMQ queues on the production one."""
    celery = services_of(shutter).celery
    purge(settings)
    try:
        for _ in range(3):
            celery.send_task("tasks.maintenance.sweep")  # routed to `default`
        for _ in range(2):
            celery.send_task("tasks.media.delete_files", kwargs={"keys": []})  # `media`
        scrape = wait_until(lambda: (s := scrape_client(shutter.client)).value(
            "shutter_queue_depth", queue="default") == 3 and s, timeout=10, what="the depth of `default`")
        assert scrape.value("shutter_queue_depth", queue="media") == 2
        for queue in ("feed", "io", "search"):
            assert scrape.has("shutter_queue_depth", queue=queue)
            assert scrape.value("shutter_queue_depth", queue=queue) == 0
    finally:
        purge(settings)
    assert scrape_client(shutter.client).value("shutter_queue_depth", queue="default") == 0


def test_outbox_pending_counts_undelivered_rows(shutter):
    services = services_of(shutter)
    assert scrape_client(shutter.client).value("shutter_outbox_pending") == 0
    with services.db.session() as session:
        rows = [outbox.task("tasks.maintenance.sweep"), outbox.task("tasks.maintenance.sweep")]
        session.add_all(rows)
        session.commit()  # promised, never published (the broker was down, say)
        assert scrape_client(shutter.client).value("shutter_outbox_pending") == 2
        outbox.mark_done(session, rows[0])
    assert scrape_client(shutter.client).value("shutter_outbox_pending") == 1


def test_metrics_answer_while_the_broker_is_down(make_app):
    """No queue depth then (rather than a wrong one), and the rest of /metrics as usual."""
    down = make_app(celery_broker_url=f"redis://127.0.0.1:{closed_port()}/0")
    scrape = scrape_client(down.test_client())
    assert not any(name == "shutter_queue_depth" for name, _ in scrape.samples)
    assert scrape.has("shutter_outbox_pending")


# -- real workers, each serving its own /metrics (production) ---------------------------------------
def worker_metrics(worker_process, settings, tmp_path: Path, name: str, **kwargs):
    """A worker with a multiprocess folder and WORKER_METRICS_PORT of its own; (worker, url)."""
    folder = tmp_path / f"metrics-{name}"
    folder.mkdir()
    port = closed_port()
    worker = worker_process(dataclasses.replace(settings, worker_metrics_port=port),
                            extra_env={"PROMETHEUS_MULTIPROC_DIR": str(folder)}, **kwargs)
    return worker, f"http://127.0.0.1:{port}/metrics"


def test_workers_serve_task_and_pipeline_metrics(shutter, app, settings, worker_process, tmp_path):
    """A prefork worker (media, feed, search, default) and a gevent one (io), as in production:
    an upload that reaches ready, one whose original is corrupt, a fan-out to one follower, a
    callback that fails once, and a task that raises."""
    worker_settings = app.extensions["shutter"].settings
    alice = shutter.account("alice")
    bob = shutter.account("bob")
    follow(shutter, bob, alice)
    with CallbackServer() as callback:
        subscribed(shutter, object="user", callback_url=callback.url())
        callback.post_statuses = [503]  # the first POST fails; the retry is delivered
        purge(settings)
        api_before = scrape_client(shutter.client)
        good = upload(shutter, alice)
        corrupt = upload(shutter, alice)
        services = services_of(shutter)
        with services.db.session() as session:
            key = session.get(Photo, corrupt).original_key
        services.storage.put(key, b"\xff\xd8\xff\xe0" + b"\x00garbage" * 500, "image/jpeg")  # bit rot

        media, media_url = worker_metrics(worker_process, worker_settings, tmp_path, "media",
                                          queues="media,feed,search,default")
        io_worker, io_url = worker_metrics(worker_process, worker_settings, tmp_path, "io",
                                           queues="io", pool="gevent", concurrency=20)
        media.start(purge=False)
        io_worker.start(purge=False)
        services.celery.send_task("tasks.feeds.follow_started", args=[])  # a TypeError: fails for good

        # Each task's run is observed after its work is counted: wait for the last ones' too.
        def media_done():
            s = scrape_url(media_url)
            return (s.value("shutter_photos_ready_total") == 1 and s.total("shutter_photos_failed_total") == 1
                    and s.value("shutter_task_seconds_count", task="tasks.feeds.fan_out") == 1
                    and s.value("shutter_task_seconds_count", task="tasks.media.process_photo") == 2
                    and s.total("shutter_task_failures_total") == 1) and s

        def io_done():
            s = scrape_url(io_url)
            return (s.value("shutter_callback_deliveries_total", result="delivered") == 1
                    and s.value("shutter_task_seconds_count", task="tasks.realtime.deliver") == 2) and s

        scrape = wait_until(media_done, timeout=60, what="the media worker's series", worker=media)
        io_scrape = wait_until(io_done, timeout=60, what="the retried callback", worker=io_worker)
    api_after = scrape_client(shutter.client)

    assert delta(api_before, api_after, "shutter_uploads_total", format="jpeg") == 2  # the API counts uploads
    assert scrape.value("shutter_photos_failed_total", reason="invalid_image") == 1
    assert scrape.value("shutter_upload_to_ready_seconds_count") == 1
    assert 0 < scrape.value("shutter_upload_to_ready_seconds_sum") < 60
    assert scrape.value("shutter_fanout_deliveries_total") == 1  # bob's feed
    assert scrape.value("shutter_fanout_seconds_count") == 1
    assert scrape.value("shutter_task_seconds_count", task="tasks.media.publish_photo") >= 1
    assert scrape.value("shutter_task_failures_total", task="tasks.feeds.follow_started",
                        exception="TypeError") == 1
    assert scrape.value("shutter_tasks_running", task="tasks.media.process_photo") == 0
    # The photo reached ready in the media worker's pool child; the API's own series do not have it.
    assert delta(api_before, api_after, "shutter_photos_ready_total") == 0

    assert io_scrape.value("shutter_callback_deliveries_total", result="failed") == 1
    assert io_scrape.value("shutter_task_retries_total", task="tasks.realtime.deliver") == 1
    assert io_scrape.value("shutter_task_seconds_count", task="tasks.realtime.notify_subscribers") == 1
    assert io_scrape.value("shutter_tasks_running", task="tasks.realtime.deliver") == 0
    assert not io_scrape.has("shutter_photos_ready_total") or io_scrape.value("shutter_photos_ready_total") == 0
    assert good  # (the good photo is the one that became ready)


def test_two_runs_of_one_task_id_at_once_are_both_observed(shutter):
    """A retry keeps its task's id, and on a gevent pool it can start before the run that retried
    has ended (RabbitMQ's confirmed publish yields to the consumer): two runs of one id in one
    process at once, here two threads. Both run times are observed, and neither is left running."""
    from celery import Celery

    metrics.watch_tasks()  # as worker.py does (connected once, whatever else runs in this process)
    celery = Celery("overlap", set_as_current=False)
    first_started, second_done = threading.Event(), threading.Event()

    @celery.task(name="tasks.test.overlap")
    def overlap(first: bool) -> None:
        if first:
            first_started.set()
            assert second_done.wait(10)

    before = scrape_client(shutter.client)
    first = threading.Thread(target=lambda: overlap.apply(args=(True,), task_id="one-id"))
    first.start()
    assert first_started.wait(10)
    overlap.apply(args=(False,), task_id="one-id")  # starts and ends while the first runs
    second_done.set()
    first.join(10)
    after = scrape_client(shutter.client)
    assert delta(before, after, "shutter_task_seconds_count", task="tasks.test.overlap") == 2
    assert after.value("shutter_tasks_running", task="tasks.test.overlap") == 0


# -- `make run`: one multiprocess folder for gunicorn and the worker ------------------------------------
class Gunicorn:
    """`gunicorn wsgi:app` as a subprocess (gunicorn.conf.py, two workers), settings from the environment."""

    def __init__(self, settings, env: dict[str, str], log_path: Path) -> None:
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = open(log_path, "ab")
        full_env = {**os.environ, **settings_env(settings), **env, "PYTHONPATH": str(ROOT), "PORT": str(self.port),
                    "WEB_CONCURRENCY": "2"}
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app", "--no-control-socket"],
                                        cwd=ROOT, env=full_env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_until(self._answers, timeout=60, what="gunicorn to answer")

    def _answers(self) -> bool:
        assert self.process.poll() is None, "gunicorn exited"
        try:
            scrape_url(f"{self.url}/metrics", timeout=2)
        except OSError:
            return False
        return True

    def worker_pids(self) -> list[int]:
        return [int(p) for p in Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()]

    def stop(self) -> None:
        stop_group(self.process, 15)
        self.log_file.close()


@pytest.fixture
def gunicorn(tmp_path):
    started = []

    def start(settings, env):
        server = Gunicorn(settings, env, tmp_path / "gunicorn.log")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_one_scrape_of_the_api_adds_up_gunicorn_and_worker_processes(settings, worker_process, gunicorn, tmp_path):
    """As `make run` runs them: the API's /metrics shows every gunicorn worker's requests and
    the Celery worker's tasks, through the folder they share; a gunicorn worker that dies
    leaves its counts."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(folder)}
    worker = worker_process(settings, extra_env=env, queues="default")
    worker.start()
    api = gunicorn(settings, env)
    for _ in range(12):  # spread over both gunicorn workers by the kernel
        with urllib.request.urlopen(f"{api.url}/docs", timeout=10) as response:
            assert response.status == 200
    celery = make_celery(settings)
    for _ in range(2):
        celery.send_task("tasks.maintenance.sweep")
    scrape = wait_until(lambda: (s := scrape_url(f"{api.url}/metrics")).value(
        "shutter_task_seconds_count", task="tasks.maintenance.sweep") == 2 and s,
        timeout=30, what="the worker's tasks in the API's scrape", worker=worker)
    assert scrape.value("shutter_http_requests_total", method="GET", endpoint="/docs", status=200) == 12
    assert scrape.has("shutter_queue_depth", queue="default")  # the scrape-time gauges too

    victim = api.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)  # gunicorn's child_exit hook marks it dead; a new worker starts
    wait_until(lambda: victim not in api.worker_pids() and len(api.worker_pids()) == 2, timeout=30,
               what="gunicorn to replace its worker")
    again = scrape_url(f"{api.url}/metrics")
    assert again.value("shutter_http_requests_total", method="GET", endpoint="/docs", status=200) == 12


def test_a_killed_process_running_a_task_stops_counting_as_running(tmp_path, monkeypatch, app):
    """tasks_running is a live gauge (multiprocess_mode=livesum): a process SIGKILLed mid-task
    (a pool child past its hard time limit, the OOM killer) leaves files behind; the next
    scrape forgets its live gauges, and keeps its counters."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from app.platform import metrics
        metrics.TASKS_RUNNING.labels("tasks.test.slow").inc()
        metrics.TASK_RETRIES.labels("tasks.test.slow").inc()
        print("running", flush=True)
        time.sleep(60)
    """)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"running"
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))  # this app's /metrics reads the folder
        client = app.test_client()
        assert scrape_client(client).value("shutter_tasks_running", task="tasks.test.slow") == 1
        child.send_signal(signal.SIGKILL)
        child.wait()
        scrape = scrape_client(client)
        assert scrape.value("shutter_tasks_running", task="tasks.test.slow") == 0
        assert scrape.value("shutter_task_retries_total", task="tasks.test.slow") == 1
        assert not list(folder.glob(f"gauge_livesum_{child.pid}.db"))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_a_scrape_while_a_process_creates_its_file_answers(tmp_path, monkeypatch, app):
    """prometheus_client creates a process's file empty, then sizes it: a scrape in between
    failed whole (a 500, seen under the full suite when a pool child made its first file)."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    child = subprocess.run([sys.executable, "-c", "from app.platform import metrics; metrics.LIKES.inc(2)"],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(folder)})
    assert child.returncode == 0
    (folder / f"histogram_{os.getpid() + 100000}.db").touch()  # a process's file, not sized yet
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    assert scrape_client(app.test_client()).value("shutter_likes_total") == 2


# -- Prometheus itself --------------------------------------------------------------------------------
@pytest.mark.skipif(PROMTOOL is None, reason="promtool is missing (Debian's prometheus package; scripts/test.sh)")
def test_the_alert_rules_and_the_config_pass_promtool():
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"],
                 ["check", "config", "prometheus.yml"]):
        result = subprocess.run([PROMTOOL, *args], cwd=OPS / "prometheus", capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def exported_names() -> set[str]:
    """Every series name Shutter exports: the registry's (suffixes included) and the scrape-time gauges'."""
    from prometheus_client import REGISTRY

    return set(REGISTRY._names_to_collectors) | {metrics.QUEUE_DEPTH, metrics.OUTBOX_PENDING}


def names_in(expr: str) -> set[str]:
    import re

    return set(re.findall(r"\bshutter_[a-z0-9_]+", expr))


def test_the_dashboard_and_the_alerts_name_only_metrics_that_exist():
    dashboard = json.loads((OPS / "grafana" / "shutter.json").read_text())
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    known = exported_names()
    titles = set()
    for panel in panels:
        titles.add(panel["title"])
        exprs = [target["expr"] for target in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            assert names_in(expr), (panel["title"], expr)
            assert names_in(expr) <= known, (panel["title"], names_in(expr) - known)
    for wanted in ("Signups / min", "Photos / s", "Ready vs failed", "Upload to ready p50 / p99",
                   "Queue depth", "Outbox pending", "Task p99", "Task failures", "HTTP 5xx rate",
                   "HTTP latency", "Fan-out", "Push, share and callback outcomes"):
        assert wanted in titles, wanted

    import yaml

    rules = yaml.safe_load((OPS / "prometheus" / "alerts.yml").read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    for name in ("ShutterQueueGrowing", "ShutterOutboxBacklog", "ShutterPhotosFailing", "ShutterHttp5xx",
                 "ShutterUploadToReadySlow"):
        assert name in alerts, name
    for rule in alerts.values():
        assert names_in(rule["expr"]) <= known, (rule["alert"], names_in(rule["expr"]) - known)
        assert rule["annotations"]["summary"] and rule["annotations"]["runbook"]


class PrometheusServer:
    def __init__(self, directory: Path, targets: dict[str, str]) -> None:
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [target]}]}
                               for job, target in targets.items()],
        }
        (directory / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log_file = open(directory / "prometheus.log", "ab")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True)
        self.log_path = directory / "prometheus.log"

    def get(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=5) as response:
            return json.loads(response.read())

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log_path.read_text()
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def query(self, expr: str) -> list[dict]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def stop(self) -> None:
        stop_group(self.process, 15)
        self.log_file.close()


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is missing (Debian's prometheus package; scripts/test.sh)")
def test_a_prometheus_server_scrapes_the_api_and_a_worker(shutter, app, live_server, worker_process, tmp_path):
    worker_settings = app.extensions["shutter"].settings
    alice = shutter.account("alice")
    worker, worker_url = worker_metrics(worker_process, worker_settings, tmp_path, "media",
                                        queues="media,feed,search,default")
    worker.start()
    prometheus = PrometheusServer(tmp_path, {"shutter-api": live_server.host,
                                             "shutter-worker": urllib.parse.urlsplit(worker_url).netloc})
    try:
        wait_until(prometheus.ready, timeout=60, what="prometheus to be ready")
        wait_until(lambda: len(prometheus.query("up == 1")) == 2, timeout=30, what="both targets up")
        for _ in range(3):
            upload(shutter, alice)
        rate = wait_until(lambda: prometheus.query('sum(rate(shutter_uploads_total{format="jpeg"}[10s])) > 0'),
                          timeout=30, what="a rate of uploads")
        assert float(rate[0]["value"][1]) > 0
        ready = wait_until(lambda: prometheus.query('shutter_photos_ready_total{job="shutter-worker"} == 3'),
                           timeout=60, what="3 photos ready in the worker's series", worker=worker)
        assert ready[0]["metric"]["job"] == "shutter-worker"
        p99 = prometheus.query("histogram_quantile(0.99, sum by (le) (shutter_upload_to_ready_seconds_bucket))")
        assert p99 and float(p99[0]["value"][1]) > 0
        wait_until(lambda: prometheus.query('shutter_queue_depth{job="shutter-api", queue="media"} == 0'),
                   timeout=30, what="the media queue's depth, drained")
    finally:
        prometheus.stop()
