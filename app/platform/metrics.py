"""Prometheus metrics: every series Shutter exports, and how they are collected.

Names are a contract: ops/grafana/shutter.json and ops/prometheus/alerts.yml
rely on them (README, "Operating Shutter"). Three kinds:

- Business counters (signups, uploads, likes, ...) count only what was
  committed: `count_after_commit` increments after the transaction's commit
  (app/platform/aftercommit.py), so a rolled-back like is not a like.
- Task metrics come from Celery's signals (`watch_tasks`, connected by the
  workers' entry point, worker.py): a histogram of run time, failures by
  exception, retries, tasks running now.
- Gauges of shared state (queue depth, outbox backlog) are read when
  scraped (`ServiceGauges`, a custom collector on the API's /metrics), never
  kept in a process's memory: any API process answers the same.

Multiprocess mode (PROMETHEUS_MULTIPROC_DIR, read by prometheus_client at
import): each process writes its values to files in that folder and a scrape
adds them up, so /metrics covers every gunicorn worker, and every pool child
of a Celery worker that shares the folder. A dead process's live gauges go
with `mark_process_dead` (gunicorn's child_exit hook, a pool child's
worker_process_shutdown) or, for one that was SIGKILLed, at the next scrape.
The folder must be empty when the processes that share it start.

Workers in production serve their own series on WORKER_METRICS_PORT (their
own folder, their own port: `serve_worker_metrics`), since they run on other
hosts than the API; under `make run` they share the API's folder instead.
"""
from __future__ import annotations

import glob
import logging
import os
import time
from typing import Any, Callable

from celery import signals
from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy.orm import Session

from app.platform import outbox
from app.platform.aftercommit import after_commit
from app.platform.queues import queue_depths

log = logging.getLogger(__name__)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

# -- HTTP -------------------------------------------------------------------------
REQUESTS = Counter("shutter_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "shutter_http_request_seconds", "HTTP request latency", ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# -- what users did (counted after the commit) --------------------------------------
SIGNUPS = Counter("shutter_signups_total", "Accounts created")
UPLOADS = Counter("shutter_uploads_total", "Uploads accepted (202), by sniffed format", ["format"])
PHOTOS_READY = Counter("shutter_photos_ready_total", "Photos that became ready")
PHOTOS_FAILED = Counter("shutter_photos_failed_total", "Photos marked failed, by reason", ["reason"])
LIKES = Counter("shutter_likes_total", "Likes added")
COMMENTS = Counter("shutter_comments_total", "Comments added")
FOLLOWS = Counter("shutter_follows_total",
                  "Follows: follow (started at once), request (to a private account), approval (a request accepted)",
                  ["kind"])
UPLOAD_TO_READY = Histogram(
    "shutter_upload_to_ready_seconds", "From the upload's commit to the photo's ready",
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 300, 900),
)

# photos_failed_total{reason}: few values, the message itself is in photos.failure_reason
FAILED_INVALID_IMAGE = "invalid_image"  # the original does not decode
FAILED_TOO_MANY_ATTEMPTS = "too_many_attempts"  # it kept killing its worker (or timing out)
FAILED_TASK_ERROR = "task_error"  # a media task raised something not retryable
FOLLOW, FOLLOW_REQUEST, FOLLOW_APPROVAL = "follow", "request", "approval"

# -- fan-out and the io queue's outcomes ----------------------------------------------
FANOUT_DELIVERIES = Counter("shutter_fanout_deliveries_total", "Photo ids written into followers' feeds")
FANOUT_SECONDS = Histogram(
    "shutter_fanout_seconds", "Time to write one chunk of followers' feeds (one Redis round trip)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CALLBACK_DELIVERIES = Counter(
    "shutter_callback_deliveries_total",
    "Real-time subscription POSTs: delivered, failed (retried), dropped (no live subscription left)", ["result"])
CALLBACK_DELIVERED, CALLBACK_FAILED, CALLBACK_DROPPED = "delivered", "failed", "dropped"
# Their `result` labels are the services' own outcomes: APNs' answer to each send (app.push.apns:
# sent, unregistered, bad_token, expired_token, throttled, provider_error, rejected) and
# off_by_preference; a share's outcome (app.sharing.service: posted, already_posted, not_linked,
# revoked, rate_limited, provider_error, refused, in_progress, skipped).
PUSH_NOTIFICATIONS = Counter("shutter_push_notifications_total", "APNs notifications, by result", ["result"])
SHARES = Counter("shutter_shares_total", "Photos shared to a linked network, by network and result",
                 ["network", "result"])

# -- Celery tasks (signals) -------------------------------------------------------------
TASK_SECONDS = Histogram(
    "shutter_task_seconds", "Celery task run time, retried runs included", ["task"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TASK_FAILURES = Counter("shutter_task_failures_total", "Celery tasks that failed for good, by exception",
                        ["task", "exception"])
TASK_RETRIES = Counter("shutter_task_retries_total", "Celery task retries", ["task"])
# livesum: the sum over processes alive now (a killed child's runs stop counting)
TASKS_RUNNING = Gauge("shutter_tasks_running", "Celery tasks running now", ["task"], multiprocess_mode="livesum")

# Gauges read when scraped (ServiceGauges)
QUEUE_DEPTH = "shutter_queue_depth"
OUTBOX_PENDING = "shutter_outbox_pending"

# Pre-declared so that rate() sees a 0 before the first event.
for _result in (CALLBACK_DELIVERED, CALLBACK_FAILED, CALLBACK_DROPPED):
    CALLBACK_DELIVERIES.labels(_result)
for _reason in (FAILED_INVALID_IMAGE, FAILED_TOO_MANY_ATTEMPTS, FAILED_TASK_ERROR):
    PHOTOS_FAILED.labels(_reason)


def count_after_commit(session: Session, counter, amount: float = 1) -> None:
    """`counter.inc(amount)` once `session`'s transaction commits; nothing if it rolls back."""
    after_commit(session).best_effort("metrics", counter.inc, amount)


def observe_after_commit(session: Session, histogram, value: float) -> None:
    after_commit(session).best_effort("metrics", histogram.observe, value)


# -- gauges read at scrape time -------------------------------------------------------------
class ServiceGauges:
    """shutter_queue_depth{queue} and shutter_outbox_pending, read from the broker and the
    database at each scrape. `services`: what has `.celery` and `.db` (the container)."""

    def __init__(self, services: Any) -> None:
        self.services = services

    def collect(self):
        celery = self.services.celery
        depth = GaugeMetricFamily(QUEUE_DEPTH, "Messages waiting in a Celery queue (read when scraped)",
                                  labels=["queue"])
        try:
            for name, count in queue_depths(celery).items():
                depth.add_metric([name], count)
        except Exception as error:  # the broker is down: no sample rather than a wrong one
            log.warning("metrics: queue depth not read (%s: %s)", type(error).__name__, error)
        yield depth
        pending = GaugeMetricFamily(OUTBOX_PENDING, "Outbox rows not delivered yet (read when scraped)")
        try:
            with self.services.db.session(read_only=True) as session:
                pending.add_metric([], outbox.pending(session)[0])
        except Exception as error:
            log.warning("metrics: outbox backlog not read (%s: %s)", type(error).__name__, error)
        yield pending


# -- multiprocess ---------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def forget_dead_processes(path: str) -> None:
    """Live gauges of processes that died without saying so (a SIGKILLed pool child)."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        try:
            pid = int(os.path.basename(name)[:-3].rsplit("_", 1)[1])
        except ValueError:
            continue
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, path)


class _ProcessMetrics:
    """This host's processes' series: the multiprocess folder's, or else this process's own."""

    def collect(self):
        path = os.environ.get(MULTIPROC_DIR)
        if not path:
            yield from REGISTRY.collect()
            return
        forget_dead_processes(path)
        try:
            families = multiprocess.MultiProcessCollector.merge(_files_with_values(path), accumulate=True)
        except FileNotFoundError:  # a dead process's file went between the listing and the read
            families = multiprocess.MultiProcessCollector.merge(_files_with_values(path), accumulate=True)
        yield from families


def _files_with_values(path: str) -> list[str]:
    """The folder's files, but those being created: prometheus_client opens a process's file,
    then sizes it, and an empty one failed the whole scrape (struct.error: a 500 from /metrics,
    seen while a pool child made its first file)."""
    files = []
    for name in glob.glob(os.path.join(path, "*.db")):
        try:
            if os.path.getsize(name) > 0:
                files.append(name)
        except FileNotFoundError:
            continue
    return files


class _Union:
    def __init__(self, *collectors) -> None:
        self.collectors = collectors

    def collect(self):
        for collector in self.collectors:
            yield from collector.collect()


# -- the API's /metrics ------------------------------------------------------------------------
def init_metrics(app: Flask, *scraped) -> None:
    """Request metrics for `app`, and GET /metrics: its processes' series plus the
    `scraped` collectors' (ServiceGauges)."""
    exposed = _Union(_ProcessMetrics(), *scraped)

    @app.before_request
    def start_timer():
        g.request_started = time.perf_counter()

    @app.after_request
    def record(response):
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        if "request_started" in g:
            LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - g.request_started)
        REQUESTS.labels(request.method, endpoint, response.status_code).inc()
        return response

    @app.get("/metrics")
    def metrics():
        return Response(generate_latest(exposed), mimetype=CONTENT_TYPE_LATEST)


# -- Celery workers ------------------------------------------------------------------------------
# A run's start is kept on its request (task.request: one per run, greenlet-local under gevent),
# not by task id: a retry keeps its task's id, and on a gevent pool the retry (countdown 0) starts
# in another greenlet before the run that retried has ended; keyed by id, the two runs were
# one, and the retry's run time and its end were never recorded (tasks_running stayed at 1).
_STARTED = "shutter_metrics_started"


def _task_started(task=None, **_) -> None:
    setattr(task.request, _STARTED, time.perf_counter())
    TASKS_RUNNING.labels(task.name).inc()


def _task_finished(task=None, **_) -> None:
    started = getattr(task.request, _STARTED, None)
    if started is None:
        return
    setattr(task.request, _STARTED, None)
    TASKS_RUNNING.labels(task.name).dec()
    TASK_SECONDS.labels(task.name).observe(time.perf_counter() - started)


def _task_failed(sender=None, exception=None, **_) -> None:
    # Also sent in the worker's main process for a child killed past its hard time limit.
    TASK_FAILURES.labels(sender.name, type(exception).__name__).inc()


def _task_retried(sender=None, **_) -> None:
    TASK_RETRIES.labels(sender.name).inc()


def _process_ended(pid=None, **_) -> None:
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(os.getpid())


def watch_tasks(metrics_port: int = 0, metrics_host: str = "127.0.0.1") -> None:
    """Task metrics from Celery's signals, in the process that runs the tasks; with
    `metrics_port`, the worker serves its series there once it is ready (WORKER_METRICS_PORT)."""
    for signal, receiver in ((signals.task_prerun, _task_started), (signals.task_postrun, _task_finished),
                             (signals.task_failure, _task_failed), (signals.task_retry, _task_retried),
                             (signals.worker_process_shutdown, _process_ended),
                             (signals.worker_shutdown, _process_ended)):
        signal.connect(receiver, weak=False, dispatch_uid=f"shutter.metrics.{receiver.__name__}")
    if metrics_port:
        signals.worker_ready.connect(_serve(metrics_port, metrics_host), weak=False,
                                     dispatch_uid="shutter.metrics.serve")


def _serve(port: int, host: str) -> Callable:
    def serve(**_) -> None:
        serve_worker_metrics(port, host)
    return serve


def serve_worker_metrics(port: int, host: str = "127.0.0.1") -> None:
    """The worker's series (every pool child's, through its multiprocess folder) on
    http://host:port/metrics, from a thread of the main process (a greenlet under gevent)."""
    if not os.environ.get(MULTIPROC_DIR):
        # A prefork pool's children would be missing: better no endpoint than a wrong one.
        log.error("WORKER_METRICS_PORT=%d needs PROMETHEUS_MULTIPROC_DIR (a folder of this worker's own): "
                  "not serving metrics", port)
        return
    start_http_server(port, host, registry=_ProcessMetrics())
    log.info("worker metrics on http://%s:%d/metrics", host, port)
