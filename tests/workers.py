"""Pytest plugin: REAL Celery workers, as subprocesses, for the fault tests.

    def test_x(worker_process, settings):
        worker = worker_process(settings)   # not started yet
        worker.start()                      # purges the queues, waits for "ready"
        worker.pool_pids()                  # the prefork children, to SIGKILL one

The worker runs `celery -A worker:celery worker` exactly as in production; its
settings reach it the way they reach production, through the environment
(worker.py builds its app from Settings.from_env() at import). It is stopped at
teardown (SIGTERM, then SIGKILL for its whole process group), and its log is
printed when the test failed. Registered in tests/conftest.py.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from app.config import ROOT, Settings
from tests.s3_server import FAKE_AWS_ENV, UNSET_AWS_ENV

QUEUES = "media,feed,io,search,default"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that make Settings.from_env() == settings."""
    env = {}
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f.name.upper()] = str(value)
    assert Settings.from_env(env) == settings, "settings that the environment cannot express"
    return env


def stop_group(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (a warm shutdown), then SIGKILL for the process's whole group
    (started with start_new_session: it and its children)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


class Worker:
    """One `celery worker` subprocess (prefork, one child by default; pool="gevent" as the io queue runs)."""

    def __init__(self, settings: Settings, directory: Path, concurrency: int = 1, extra_env: dict | None = None,
                 queues: str = QUEUES, pool: str = "prefork"):
        self.settings = settings
        self.concurrency = concurrency
        self.pool = pool
        self.queues = queues  # what it consumes (-Q)
        self.name = f"shutter-test-{uuid.uuid4().hex[:8]}@%h"
        self.log_path = directory / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen | None = None
        self._log_file = None

    # -- life cycle -----------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in UNSET_AWS_ENV}
        env.update(settings_env(self.settings))
        env.update(FAKE_AWS_ENV)  # moto takes any credentials; never a real account's
        env.update(self.extra_env)
        env["PYTHONPATH"] = str(ROOT)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self, purge: bool = True, timeout: float = READY_TIMEOUT) -> "Worker":
        if purge:
            self.purge()
        self._log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker:celery", "worker", "-Q", self.queues,
             "-c", str(self.concurrency), "-P", self.pool, "--without-gossip", "--without-mingle",
             "-n", self.name, "-l", "info"],
            cwd=ROOT, env=self.env(), stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends the pool children too
        )
        try:
            self.wait_for_log(" ready.", timeout)
            if self.pool == "prefork":  # a gevent pool's greenlets live in the worker process itself
                self.wait_for(lambda: len(self.pool_pids()) == self.concurrency, timeout, "pool children")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (warm shutdown), then SIGKILL for the whole process group."""
        if self.process is None:
            return
        stop_group(self.process, timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def purge(self) -> int:
        """Drop every message waiting in the worker's queues (other tests' leftovers)."""
        from app.worker import make_celery

        # A connection of its own: kombu's pools are global per broker URL, and
        # closing them would break the API app's publisher in this process.
        app = make_celery(self.settings)
        with app.connection_for_write() as connection:
            return app.control.purge(connection=connection) or 0

    # -- looking at it ------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.process is not None, "the worker was not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pool_pids(self) -> list[int]:
        """The prefork pool's children (psutil-free: /proc/<pid>/task/*/children)."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        return sorted(set(pids))

    def kill_pool_child(self) -> int:
        """SIGKILL the (only) pool child, as the OOM killer would; returns its pid."""
        children = self.pool_pids()
        assert len(children) == 1, f"expected one pool child, found {children}"
        os.kill(children[0], signal.SIGKILL)
        return children[0]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for_log(self, text: str, timeout: float = READY_TIMEOUT, count: int = 1) -> None:
        self.wait_for(lambda: self.log().count(text) >= count, timeout, f"{text!r} x{count} in its log")

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the worker exited ({self.process.returncode}) while waiting for {what}\n"
                                     f"{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"_worker_report_{report.when}", report)


@pytest.fixture
def worker_process(request, tmp_path):
    """A factory of Worker objects (not started); all are stopped at teardown."""
    workers: list[Worker] = []

    def make(settings: Settings, **kwargs) -> Worker:
        worker = Worker(settings, tmp_path, **kwargs)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop()
    failed = any(getattr(getattr(request.node, f"_worker_report_{when}", None), "failed", False)
                 for when in ("setup", "call"))
    if failed:
        for worker in workers:
            print(f"\n----- celery worker {worker.name} log ({worker.log_path}) -----\n{worker.log()}")
