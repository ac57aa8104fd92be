"""`make run`: the whole of Shutter on one machine, in the foreground.

1. With REDIS_URL unset, start the embedded redis-server (data in
   var/redis) and hand its URL to every child as REDIS_URL (and as
   CELERY_BROKER_URL unless that is set).
2. Create var/ and the media folder; `alembic upgrade head` (must succeed).
3. Start gunicorn, two Celery workers (`worker`: media, feed, search and
   default on a prefork pool; `io`: the io queue on a gevent pool, so slow
   remote APIs never hold up photo processing), celery beat and Flower, each
   in its own process group, their output prefixed with their name.
4. Poll /healthz until 200, then print the URLs.
5. Ctrl-C / SIGTERM: SIGTERM every group, SIGKILL what is left after a
   grace period, stop the embedded redis last. If a child dies on its own,
   stop everything and exit non-zero naming it.

Environment: PORT (8000), WEB_CONCURRENCY (2), CELERY_WORKER_ARGS, CELERY_IO_WORKER_ARGS,
FLOWER_PORT (5555), HEALTH_TIMEOUT (120 s), SHUTDOWN_GRACE (15 s).
Values of the environment are never printed (they may hold secrets).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
sys.path.insert(0, str(ROOT))

PY = sys.executable  # the venv's python: run every tool as `python -m tool`
DEFAULT_WORKER_ARGS = "-Q media,feed,search,default --concurrency 2 -l info"
# Push, share and subscriber callbacks wait on remote APIs: greenlets, not processes (as in production).
DEFAULT_IO_WORKER_ARGS = "-Q io -P gevent --concurrency 200 -l info"

_print_lock = threading.Lock()
_signals: list[int] = []  # signals received, handled by the main loop


def say(name: str, line: str, width: int = 6) -> None:
    with _print_lock:
        sys.stdout.write(f"{name:<{width}} | {line.rstrip()}\n")
        sys.stdout.flush()


def log(line: str) -> None:
    say("run", line)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        # SO_REUSEADDR as gunicorn does: TIME_WAIT leftovers do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Child:
    """One child command in its own process group, output prefixed."""

    def __init__(self, name: str, args: list[str], env: dict[str, str]):
        self.name = name
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # own group: Ctrl-C reaches only us
        )
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for raw in self.proc.stdout:
            say(self.name, raw.decode(errors="replace"))

    def signal_group(self, sig: int) -> None:
        try:  # the group outlives its leader if e.g. a pool child lingers
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def group_alive(self) -> bool:
        self.proc.poll()  # reap the leader: a zombie would count as alive
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def stop_all(children: list[Child], grace: float) -> None:
    for child in children:
        child.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    signals_before = len(_signals)
    while time.monotonic() < deadline and len(_signals) == signals_before:
        if not any(c.group_alive() for c in children):
            break
        time.sleep(0.2)
    for child in children:
        if child.group_alive():
            log(f"{child.name} still running after SIGTERM: SIGKILL")
            child.signal_group(signal.SIGKILL)
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


BAD = {"down", "error", "fail", "failed", "unhealthy", "false"}


def health_problem(port: int) -> str | None:
    """None when /healthz answers 200, else what is still down."""
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as err:
        code, body = err.code, err.read(4000).decode(errors="replace")
    except OSError:
        return "API not answering yet"
    try:  # name the components whose value says they are down
        data = json.loads(body)
    except ValueError:
        data = None
    down = []

    def walk(obj, path: str) -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                walk(value, f"{path}.{key}" if path else key)
        elif obj is False:
            down.append(path)
        elif isinstance(obj, str) and obj.split(":")[0].strip().lower() in BAD:
            down.append(f"{path} ({obj})")  # e.g. "down: ConnectionError"

    walk(data, "")
    return f"HTTP {code}, down: {', '.join(down)}" if down else f"HTTP {code}: {body[:200]}"


def main() -> int:
    port = int(os.environ.get("PORT") or 8000)
    flower_port = int(os.environ.get("FLOWER_PORT") or 5555)
    health_timeout = float(os.environ.get("HEALTH_TIMEOUT") or 120)
    grace = float(os.environ.get("SHUTDOWN_GRACE") or 15)
    for p, what in ((port, "PORT"), (flower_port, "FLOWER_PORT")):
        if not port_free(p):
            log(f"127.0.0.1:{p} is already in use; stop that or set {what}")
            return 1

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: _signals.append(signum))

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    media_root = Path(env.get("MEDIA_ROOT") or VAR / "media")
    VAR.mkdir(exist_ok=True)
    media_root.mkdir(parents=True, exist_ok=True)

    redis = None
    children: list[Child] = []
    try:
        if not env.get("REDIS_URL"):
            from app.platform.embedded import EmbeddedRedis

            redis = EmbeddedRedis.start(VAR / "redis")
            env["REDIS_URL"] = redis.url
            env.setdefault("CELERY_BROKER_URL", redis.url)
            log(f"embedded redis-server on 127.0.0.1:{redis.port} (data in var/redis)")
        else:
            log("using REDIS_URL from the environment")

        log("alembic upgrade head")
        migrate = subprocess.run([PY, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env)
        if _signals:  # Ctrl-C reached alembic too
            return 0
        if migrate.returncode != 0:
            log(f"migrations failed (alembic exit code {migrate.returncode}); not starting")
            return 1

        workers = env.get("WEB_CONCURRENCY") or "2"
        worker_args = shlex.split(env.get("CELERY_WORKER_ARGS") or DEFAULT_WORKER_ARGS)
        io_worker_args = shlex.split(env.get("CELERY_IO_WORKER_ARGS") or DEFAULT_IO_WORKER_ARGS)
        commands = {
            "web": [PY, "-m", "gunicorn", "wsgi:app", "-b", f"127.0.0.1:{port}",
                    "-w", workers, "--access-logfile", "-", "--no-control-socket"],
            "worker": [PY, "-m", "celery", "-A", "worker:celery", "worker", "-n", "worker@%h", *worker_args],
            "io": [PY, "-m", "celery", "-A", "worker:celery", "worker", "-n", "io@%h", *io_worker_args],
            "beat": [PY, "-m", "celery", "-A", "worker:celery", "beat", "-l", "info",
                     "-s", str(VAR / "celerybeat-schedule")],
            "flower": [PY, "-m", "celery", "-A", "worker:celery", "flower",
                       "--address=127.0.0.1", f"--port={flower_port}"],
        }
        # gunicorn's workers and the Celery worker's pool are separate processes:
        # Prometheus adds up their metrics through files in this folder, emptied at
        # each start, so one scrape of the API's /metrics shows the worker's too.
        metrics_dir = VAR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        metrics_env = dict(env, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
        for name, args in commands.items():
            children.append(Child(name, args, metrics_env if name in ("web", "worker", "io") else env))

        started = time.monotonic()
        healthy = False
        last_report = 0.0
        while not _signals:
            for child in children:
                if child.proc.poll() is not None:
                    log(f"{child.name} exited unexpectedly (code {child.proc.returncode}); "
                        "stopping everything")
                    return 1
            if not healthy:
                problem = health_problem(port)
                elapsed = time.monotonic() - started
                if problem is None:
                    healthy = True
                    base = f"http://127.0.0.1:{port}"
                    log(f"Shutter is up ({elapsed:.0f}s). Ctrl-C stops everything.")
                    for label, url in (("API", base), ("docs", f"{base}/docs"),
                                       ("health", f"{base}/healthz"),
                                       ("metrics", f"{base}/metrics"),
                                       ("Flower", f"http://127.0.0.1:{flower_port}")):
                        log(f"  {label:<8} {url}")
                elif elapsed > health_timeout:
                    log(f"/healthz not 200 after {health_timeout:.0f}s ({problem}); "
                        "stopping everything")
                    return 1
                elif time.monotonic() - last_report >= 5:
                    last_report = time.monotonic()
                    log(f"waiting for /healthz: {problem}")
            time.sleep(0.5)
        log(f"received {signal.Signals(_signals[0]).name}; stopping")
        return 0
    except Exception as exc:  # e.g. the embedded redis did not start
        log(f"error: {exc}")
        return 1
    finally:
        if children:
            stop_all(children, grace)
        if redis is not None:
            redis.stop()
            log("embedded redis stopped")


if __name__ == "__main__":
    sys.exit(main())
