"""Benchmark of every read endpoint (issue 16), each beside the warm home feed read
and a bare route measured in the same run.

    .venv/bin/python bench/reads.py [--stack production|embedded] [--only media,feed,...] [--duration 5]

Seeds one world through the app itself (in-process: its test client, the
pipeline's process/publish functions and FeedManager.fan_out_all, as the
media and feed workers run them), starts gunicorn (--workers, default 2;
the sync workers of gunicorn.conf.py) on bench/feeds_wsgi.py, checks that
every read answers 200 with the expected number of items (a bench must not
measure an error page), warms each one (a 1 s wrk pass), then measures each
with `wrk -t2 -c16 -d<duration>s --latency`. The feed is measured first,
half way and last, the bare route first and last; their means are what the
others are compared with.

The world: a private viewer following a public friend (20 uploads, tagged
#bench at one place) and a private account that approved them (5 uploads):
25 uploads, all processed to ready. The friend's newest photo has 5 comments
and the viewer's like; the viewer also likes the friend's 19 other photos, so
/media/popular and /users/self/media/liked are 20-item pages like the others.
Three fans follow the friend; the viewer approved the friend and two fans,
and a fan and one more account are still asking (requested-by).

Stacks:
  production  PostgreSQL (BENCH_DATABASE_URL, default database shutter_bench_reads,
              dropped and migrated), Redis (BENCH_REDIS_URL, default db 12, flushed
              before and after), memcached (BENCH_MEMCACHED_SERVERS, default
              127.0.0.1:11211 when it listens; else the cache is in-process)
  embedded    SQLite and an embedded redis-server in a temporary folder, the
              cache in-process: the default `make run` stack

Target (issue 16): >= 0.8x the feed's req/s and p99 <= 25 ms, for every read
but the searches (users, tags, and media by place), which are exempt: their
verdict is printed for information.
"""
from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import psycopg  # noqa: E402
import redis as redis_lib  # noqa: E402

from bench.feeds import ensure_wrk, wait_for_port  # noqa: E402
from bench.stack import free_port  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/shutter_bench_reads")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
MEMCACHED = os.environ.get("BENCH_MEMCACHED_SERVERS", "127.0.0.1:11211")
TARGET_VS_FEED = 0.8
TARGET_P99_MS = 25.0
FRIEND_PHOTOS, PRIVATE_PHOTOS = 20, 5
PLACE = {"lat": "48.8584", "lng": "2.2945", "location_name": "Bench Place"}


@dataclass
class Read:
    name: str
    path: str  # {names} from the seeded world
    items: int | None  # in `data`: a list's length, None for one object
    exempt: bool = False  # the searches: no target


# Every read endpoint of the API; `feed` and `bare` are the references.
READS = [
    Read("feed", "/v1/users/self/feed", 20),
    Read("bare", "/bench/bare", None),
    Read("users/self", "/v1/users/self", None),
    Read("users/{id}", "/v1/users/{friend}", None),
    Read("media/{id}", "/v1/media/{photo}", None),
    Read("media/shortcode", "/v1/media/shortcode/{code}", None),
    Read("users/{id}/media/recent", "/v1/users/{friend}/media/recent", 20),
    Read("tags/{tag}/media/recent", "/v1/tags/bench/media/recent", 20),
    Read("locations/{id}/media/recent", "/v1/locations/{location}/media/recent", 20),
    Read("media/popular", "/v1/media/popular", 20),
    Read("users/self/media/liked", "/v1/users/self/media/liked", 20),
    Read("media/{id}/comments", "/v1/media/{photo}/comments", 5),
    Read("media/{id}/likes", "/v1/media/{photo}/likes", 1),
    Read("users/{id}/relationship", "/v1/users/{friend}/relationship", None),
    Read("users/{id}/followed-by", "/v1/users/{friend}/followed-by", 4),
    Read("users/{id}/follows", "/v1/users/{friend}/follows", 1),
    Read("users/self/requested-by", "/v1/users/self/requested-by", 2),
    Read("users/self/activity", "/v1/users/self/activity", 7),
    Read("users/search", "/v1/users/search?q=fan", 3, exempt=True),
    Read("tags/search", "/v1/tags/search?q=ben", 1, exempt=True),
    Read("media/search", "/v1/media/search?lat=48.8584&lng=2.2945", 20, exempt=True),
]


# -- the stacks -----------------------------------------------------------------
def production_env() -> tuple[dict, callable]:
    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    redis_lib.Redis.from_url(REDIS_URL).flushdb()
    env = {"DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "CELERY_BROKER_URL": REDIS_URL}
    host, _, port = MEMCACHED.partition(":")
    try:
        socket.create_connection((host, int(port or 11211)), timeout=1).close()
        env["MEMCACHED_SERVERS"] = MEMCACHED
    except OSError:
        print(f"no memcached on {MEMCACHED}: the cache is in-process", flush=True)

    def stop() -> None:
        redis_lib.Redis.from_url(REDIS_URL).flushdb()

    return env, stop


def embedded_env(directory: Path) -> tuple[dict, callable]:
    from app.platform.embedded import EmbeddedRedis

    embedded = EmbeddedRedis.start(directory / "redis")
    return ({"DATABASE_URL": f"sqlite:///{directory / 'shutter.db'}", "REDIS_URL": embedded.url,
             "CELERY_BROKER_URL": embedded.url}, embedded.stop)


def migrate(env: dict) -> None:
    subprocess.run([str(ROOT / ".venv/bin/python"), "-m", "alembic", "upgrade", "head"], cwd=ROOT,
                   env={**os.environ, **env}, check=True, capture_output=True)


# -- the world --------------------------------------------------------------------
def seed() -> tuple[str, dict]:
    """The world of the module docstring, through the app (env already in os.environ);
    returns the viewer's token and the names the paths use."""
    from app import create_app
    from app.engagement import popular
    from app.media import pipeline
    from tests.support import Shutter

    app = create_app()
    services = app.extensions["shutter"]
    shutter = Shutter(app.test_client())
    try:
        viewer = shutter.account("viewer", private=True)
        friend = shutter.account("friend")
        private = shutter.account("closefriend", private=True)
        fans = [shutter.account(f"fan{i}") for i in range(3)]
        asker = shutter.account("asker")
        for followee in (friend, private):
            assert shutter.relate(viewer, followee, "follow").status_code == 200
        assert shutter.relate(private, viewer, "approve").status_code == 200
        for fan in fans:
            assert shutter.relate(fan, friend, "follow").status_code == 200
        assert shutter.relate(friend, viewer, "follow").status_code == 200  # requests: the viewer is private
        for who in (*fans, asker):
            assert shutter.relate(who, viewer, "follow").status_code == 200
        for who in (friend, fans[0], fans[1]):
            assert shutter.relate(viewer, who, "approve").status_code == 200

        def upload(account) -> int:
            response = shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(jpeg), "p.jpg")},
                                    caption="a #bench photo", **PLACE)
            assert response.status_code == 202, response.json
            photo_id = int(response.json["data"]["id"].split("_")[0])
            with app.app_context(), services.db.session() as session:  # what the media worker does
                assert pipeline.process_photo(session, services.storage, photo_id)
                assert pipeline.publish_photo(session, services.celery, photo_id, feeds=services.feeds)
            with app.app_context():
                services.feeds.fan_out_all(photo_id)  # what the feed worker does
                services.search.index_photo(photo_id)  # and the search worker
            return photo_id

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (1200, 900), (180, 90, 40)).save(buffer, "JPEG", quality=85)
        jpeg = buffer.getvalue()
        theirs = [upload(private) for _ in range(PRIVATE_PHOTOS)]
        friends = [upload(friend) for _ in range(FRIEND_PHOTOS)]
        newest = friends[-1]
        for i, who in enumerate((friend, private, fans[0], fans[1], viewer)):
            text = "nice one @viewer" if i < 2 else f"comment {i} #bench"
            assert shutter.post(f"/v1/media/{newest}/comments", who, text=text).status_code == 200
        for photo_id in friends:  # the newest photo's one like, and the liked page's 19 more
            assert shutter.post(f"/v1/media/{photo_id}/likes", viewer).status_code == 200
        with app.app_context():
            with services.db.session() as session:
                assert popular.compute(session, services.redis) == FRIEND_PHOTOS
            services.search.index_users([int(a.id) for a in (viewer, friend, private, *fans, asker)])
        media = shutter.get(f"/v1/media/{newest}", viewer).json["data"]
        assert theirs and media["likes"]["count"] == 1 and media["comments"]["count"] == 5
        names = {"friend": friend.id, "photo": media["id"], "location": media["location"]["id"],
                 "code": media["link"].rstrip("/").rsplit("/", 1)[1]}
        return viewer.token, names
    finally:
        services.close()


# -- measuring --------------------------------------------------------------------
def url_of(base: str, read: Read, token: str, names: dict) -> str:
    path = read.path.format(**names)
    if read.name == "bare":
        return base + path
    return f"{base}{path}{'&' if '?' in path else '?'}access_token={token}"


def check(url: str, read: Read) -> None:
    """A 200 with the expected data, or the bench stops: it must not measure an error page."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{read.name}: {error.code} {error.read()[:300]!r}") from None
    data = body.get("data")
    if read.items is None:
        ok = isinstance(data, dict) and data
    else:
        ok = isinstance(data, list) and len(data) == read.items
    if not ok:
        got = len(data) if isinstance(data, list) else type(data).__name__
        raise SystemExit(f"{read.name}: expected {read.items if read.items is not None else 'an object'} "
                         f"in data, got {got}: {str(body)[:300]}")


def wrk(binary: str, url: str, seconds: int) -> dict:
    out = subprocess.run([binary, "-t2", "-c16", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout

    def millis(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)$", out, re.M)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": millis("50%"), "p99": millis("99%"),
            "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": socket_errors.group(1) if socket_errors else ""}


def mean(runs: list[dict]) -> dict:
    return {key: sum(r[key] for r in runs) / len(runs) for key in ("rps", "p50", "p99")} | {
        "errors": sum(r["errors"] for r in runs),
        "socket_errors": "; ".join(r["socket_errors"] for r in runs if r["socket_errors"])}


def verdict(read: Read, result: dict, feed: dict) -> str:
    if result["errors"]:
        return f"NOT met ({result['errors']} errors)"
    if read.name in ("feed", "bare"):
        return "(reference)"
    met = result["rps"] >= TARGET_VS_FEED * feed["rps"] and result["p99"] <= TARGET_P99_MS
    if read.exempt:
        return f"(exempt; would be {'met' if met else 'not met'})"
    return "met" if met else "NOT met"


def run(args) -> None:
    chosen = [r for r in READS if r.name in ("feed", "bare") or not args.only or r.name in args.only]
    unknown = set(args.only or ()) - {r.name for r in READS}
    if unknown:
        raise SystemExit(f"--only: unknown reads {sorted(unknown)}; one of {[r.name for r in READS]}")
    binary = ensure_wrk()
    scratch = Path(tempfile.mkdtemp(prefix="shutter-bench-reads-"))
    stack_env, stop_stack = production_env() if args.stack == "production" else embedded_env(scratch)
    env = {**stack_env, "MEDIA_ROOT": str(scratch / "media"), "RATE_LIMITS_ENABLED": "false",
           "PROMETHEUS_MULTIPROC_DIR": str(scratch / "metrics"), "PYTHONPATH": str(ROOT)}
    (scratch / "metrics").mkdir()
    for name in ("DATABASE_REPLICA_URLS", "MEMCACHED_SERVERS", "SEARCH_BACKEND"):
        if name not in env:
            os.environ.pop(name, None)  # the stack is this bench's, not the caller's
    os.environ.update(env)
    server = None
    try:
        started = time.monotonic()
        load_before = os.getloadavg()[0]
        migrate(env)
        token, names = seed()
        print(f"seeded in {time.monotonic() - started:.0f}s ({args.stack}: "
              f"{'memcached ' + env['MEMCACHED_SERVERS'] if 'MEMCACHED_SERVERS' in env else 'in-process cache'})",
              flush=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
             "--log-level", "warning", "bench.feeds_wsgi:app"], cwd=ROOT, env={**os.environ, **env})
        wait_for_port(port)
        urls = {r.name: url_of(base, r, token, names) for r in chosen}
        for read in chosen:
            check(urls[read.name], read)
        for read in chosen:  # one warm-up pass: every worker's connections and caches
            wrk(binary, urls[read.name], 1)
        results: dict[str, list[dict]] = {"feed": [], "bare": []}
        for name in ("feed", "bare"):
            results[name].append(wrk(binary, urls[name], args.duration))
        others = [r for r in chosen if r.name not in ("feed", "bare")]
        for i, read in enumerate(others):
            if i == len(others) // 2:  # the feed once more half way: the machine's load drifts
                results["feed"].append(wrk(binary, urls["feed"], args.duration))
            results[read.name] = [wrk(binary, urls[read.name], args.duration)]
        for name in ("feed", "bare"):  # again at the end: the references bracket the run
            results[name].append(wrk(binary, urls[name], args.duration))
        for read in chosen:  # still the same answers after the load
            check(urls[read.name], read)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        stop_stack()
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {name: mean(runs) for name, runs in results.items()}
    feed, bare = summary["feed"], summary["bare"]
    print(f"\n== every read, warm, {args.stack} stack: gunicorn {args.workers} workers, wrk -t2 -c16 "
          f"-d{args.duration}s (feed and bare: mean of their runs, first, [middle,] last) ==")
    print(f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores: "
          "other work on the machine lowers every figure; compare the ratios")
    print(f"{'read':<30}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x feed':>8}{'x bare':>8}   "
          f"target (>= {TARGET_VS_FEED}x feed, p99 <= {TARGET_P99_MS:g} ms)")
    met = missed = 0
    for read in chosen:
        result = summary[read.name]
        outcome = verdict(read, result, feed)
        met += outcome == "met"
        missed += outcome.startswith("NOT")
        print(f"{read.name:<30}{result['rps']:>9,.0f}{result['p50']:>9.1f}{result['p99']:>9.1f}"
              f"{result['rps'] / feed['rps']:>7.2f}x{result['rps'] / bare['rps']:>7.2f}x   {outcome}"
              + (f"  [socket errors: {result['socket_errors']}]" if result["socket_errors"] else ""))
    runs = {name: ", ".join(f"{r['rps']:,.0f}" for r in results[name]) for name in ("feed", "bare")}
    print(f"feed runs: {runs['feed']} req/s; bare runs: {runs['bare']} req/s")
    print(f"target met by {met} of {met + missed} reads" + ("" if missed else ": all"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=("production", "embedded"), default="production")
    parser.add_argument("--only", type=lambda s: [n.strip() for n in s.split(",") if n.strip()],
                        help="comma-separated read names (the feed and bare are always measured)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per read")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
