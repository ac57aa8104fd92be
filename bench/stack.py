"""The production stack for benchmarks: PostgreSQL, Redis, S3 on moto,
gunicorn and a Celery worker, each a real process on this machine.

    with ProductionStack("pipeline", worker_args=["-Q", "media", "-c", "2"]) as stack:
        token = stack.account("bench")
        stack.api.post("/v1/media/upload", ...)
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
PASSWORD = "bench-password-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f}s")


class ProductionStack:
    def __init__(self, name: str, *, worker_args: list[str] | None = None, web_workers: int = 2,
                 redis_db: int = 13) -> None:
        self.name = name
        self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/shutter_bench_{name}"
        self.redis_url = f"redis://127.0.0.1:6379/{redis_db}"
        self.worker_args = worker_args
        self.web_workers = web_workers
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs = ROOT / "var" / "bench"

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self) -> "ProductionStack":
        import psycopg
        import redis

        self.logs.mkdir(parents=True, exist_ok=True)
        db_name = self.database_url.rsplit("/", 1)[1]
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db_name}"')
        redis.Redis.from_url(self.redis_url).flushdb()
        s3_port = free_port()
        self.env = dict(
            os.environ, DATABASE_URL=self.database_url, REDIS_URL=self.redis_url,
            CELERY_BROKER_URL=self.redis_url, STORAGE_BACKEND="s3", S3_BUCKET="bench",
            S3_ENDPOINT_URL=f"http://127.0.0.1:{s3_port}", AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1", RATE_LIMITS_ENABLED="false",
            PYTHONUNBUFFERED="1",
        )
        # The bench process talks to the same S3 (e.g. for a baseline).
        os.environ.update({k: self.env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
        subprocess.run([PY, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=self.env, check=True,
                       capture_output=True)
        self._start("s3", [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)])
        _wait(lambda: requests.get(self.env["S3_ENDPOINT_URL"], timeout=1).status_code < 500, 30, "moto")
        import boto3

        boto3.client("s3", endpoint_url=self.env["S3_ENDPOINT_URL"], region_name="us-east-1",
                     aws_access_key_id="bench", aws_secret_access_key="bench").create_bucket(Bucket="bench")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._start("web", [PY, "-m", "gunicorn", "wsgi:app", "-b", f"127.0.0.1:{self.port}",
                            "-w", str(self.web_workers), "--no-control-socket"])
        _wait(lambda: requests.get(f"{self.base}/healthz", timeout=2).status_code == 200, 60, "gunicorn")
        if self.worker_args is not None:
            self._start("worker", [PY, "-m", "celery", "-A", "worker:celery", "worker", "--without-gossip",
                                   "--without-mingle", "-l", "warning", *self.worker_args])
            _wait(self._worker_ready, 60, "the Celery worker")
        return self

    def _worker_ready(self) -> bool:
        ping = subprocess.run([PY, "-m", "celery", "-A", "worker:celery", "inspect", "ping", "-t", "2"],
                              cwd=ROOT, env=self.env, capture_output=True, text=True)
        return "pong" in ping.stdout

    def _start(self, name: str, args: list[str]) -> None:
        log = open(self.logs / f"{self.name}-{name}.log", "w")
        self.processes[name] = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)

    def __exit__(self, *exc) -> None:
        for proc in reversed(list(self.processes.values())):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for proc in self.processes.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    # -- helpers --------------------------------------------------------------
    def worker_pool_pids(self) -> list[int]:
        """The prefork pool's child processes (they do the image work)."""
        parent = self.processes["worker"].pid
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        return [int(pid) for pid in children]

    def account(self, username: str) -> str:
        """A new user and API client; returns an access token."""
        requests.post(f"{self.base}/v1/users", data={
            "username": username, "password": PASSWORD, "email": f"{username}@bench.example"}).raise_for_status()
        client = requests.post(f"{self.base}/v1/clients", auth=(username, PASSWORD),
                               data={"name": "bench", "redirect_uri": "http://localhost/cb"}).json()["data"]
        token = requests.post(f"{self.base}/oauth/access_token", data={
            "grant_type": "password", "username": username, "password": PASSWORD,
            "client_id": client["client_id"], "client_secret": client["client_secret"],
            "scope": "basic comments relationships likes publish"}).json()
        return token["access_token"]


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a live process (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


if __name__ == "__main__":
    sys.exit("bench/stack.py is a helper; run bench/pipeline.py or bench/feeds.py")
