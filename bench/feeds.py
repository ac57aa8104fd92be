"""Benchmark of the home feed (app/feeds/manager.py), each figure beside a baseline
measured in the same run.

    .venv/bin/python bench/feeds.py [--section fanout --section read]

Runs against the local Redis (127.0.0.1:6379, db 14, flushed before and
after) and PostgreSQL (database shutter_bench, dropped and migrated).

  fanout  deliveries/s of one photo into 100,000 followers' feeds with
          FeedManager.deliver (one pipelined round trip per CHUNK followers),
          beside a Lua script doing the same ZADD + trim + EXPIRE inside Redis (EVALSHA
          per chunk), interleaved, median of --reps. The feeds are prefilled
          to their cap (--feed-size entries, skiplist-encoded), so every
          delivery also trims one entry: an active user's steady state. Also
          FeedManager.fan_out_all end to end (followers paged from PostgreSQL,
          in-process: no Celery overhead).
          Targets: >= 150,000 deliveries/s and >= 0.8x the Lua reference.
  read    GET /v1/users/self/feed (20 items, warm: token cached, feed built,
          media rendered, so each read is one Redis round trip; 100 followees,
          one of them a celebrity merged at read time) under gunicorn (--workers
          sync workers, by default as many as gunicorn.conf.py starts: 2 x
          cores + 1) with wrk (--connections, by default two per worker), beside a
          bare JSON route of the same app (bench/feeds_wsgi.py) under the same
          server and load; also, for information, a route that only
          authenticates the token and one that writes a constant body the
          size of the feed page; and what Redis itself spends per read
          (its own time on the script, INFO commandstats, and the bytes it
          sends) beside the token-only route's GET. The cache service is the
          local memcached when one listens on 11211 (as in production), else
          in-process.
          Targets: >= 0.5x the bare route's requests/s, p99 <= 25 ms.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dataclasses  # noqa: E402

import psycopg  # noqa: E402
import redis as redis_lib  # noqa: E402

from app.config import Settings  # noqa: E402
from app.feeds.manager import CHUNK, FeedManager  # noqa: E402
from app.platform.keys import feed_key  # noqa: E402
from app.services import Services  # noqa: E402
from models.ids import make_id, shortcode  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/14"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/shutter_bench"
PORT = 18765
TARGET_DELIVERIES = 150_000
TARGET_VS_LUA = 0.8
TARGET_VS_BARE = 0.5
TARGET_P99_MS = 25.0

LUA_FAN_OUT = """
local member, score, stop, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, score, member)
  redis.call('ZREMRANGEBYRANK', key, 1, stop)
  redis.call('EXPIRE', key, ttl)
end
return #KEYS
"""


def row(name: str, ours: float, baseline: float, unit: str, target: str, higher_is_better: bool = True) -> None:
    ratio = ours / baseline if baseline else float("nan")
    print(f"{name:<44}{ours:>12,.1f}{baseline:>14,.1f}  {unit:<10}{ratio:>7.2f}x   {target}")


def header(title: str) -> None:
    print(f"\n== {title} ==")
    print(f"{'measure':<44}{'ours':>12}{'baseline':>14}  {'unit':<10}{'ratio':>8}   target")


# -- database ---------------------------------------------------------------
def reset_database() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute("DROP DATABASE IF EXISTS shutter_bench WITH (FORCE)")
        connection.execute("CREATE DATABASE shutter_bench")
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", DATABASE_URL.replace("postgresql://", "postgresql+psycopg://"))
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


USER_COLUMNS = ("id", "username", "username_key", "email", "email_key", "password_hash", "full_name", "bio",
                "website", "is_private", "media_count", "follows_count", "followed_by_count", "created_at",
                "last_active_at")


def copy_users(connection, users: list[tuple[int, str, int, int]]) -> None:
    """(id, username, follows_count, followed_by_count) rows, by COPY; all active now
    (fan-out skips followers unseen for FEED_INACTIVE_DAYS)."""
    now = datetime.now(timezone.utc).isoformat()
    with connection.cursor().copy(f"COPY users ({', '.join(USER_COLUMNS)}) FROM STDIN") as copy:
        for user_id, name, follows, followed_by in users:
            copy.write_row((user_id, name, name, f"{name}@bench", f"{name}@bench", "x", name.title(), "", "",
                            False, 0, follows, followed_by, "2024-01-01T00:00:00Z", now))


def copy_follows(connection, pairs: list[tuple[int, int]]) -> None:
    with connection.cursor().copy("COPY follows (id, follower_id, followee_id, status, created_at) FROM STDIN") as copy:
        for follower_id, followee_id in pairs:
            copy.write_row((make_id(), follower_id, followee_id, "active", "2024-01-01T00:00:00Z"))


def copy_photos(connection, photos: list[tuple[int, int]]) -> None:
    """(photo id, user id) rows, ready, with derivatives that only need to name keys."""
    import json

    columns = ("id", "user_id", "shortcode", "status", "caption", "filter", "original_key", "original_content_type",
               "width", "height", "derivatives", "blurhash", "like_count", "comment_count", "attempts",
               "created_at", "updated_at", "ready_at")
    with connection.cursor().copy(f"COPY photos ({', '.join(columns)}) FROM STDIN") as copy:
        for photo_id, user_id in photos:
            derivatives = {name: {"key": f"photos/{photo_id}/{name}.jpg", "width": width, "height": width}
                           for name, width in (("thumbnail", 150), ("low_resolution", 320),
                                               ("standard_resolution", 640), ("high_resolution", 1080))}
            copy.write_row((photo_id, user_id, shortcode(photo_id), "ready", f"photo {photo_id}", "Normal",
                            f"originals/{photo_id}.jpg", "image/jpeg", 1080, 1080, json.dumps(derivatives),
                            "LEHV6nWB2yk8pyo0adR*.7kCMdnj", 0, 0, 1, "2024-01-01T00:00:00Z",
                            "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"))


# -- fan-out ------------------------------------------------------------------
def bench_fanout(args) -> None:
    followers = args.followers
    redis = redis_lib.Redis.from_url(REDIS_URL, decode_responses=True)
    redis.flushdb()
    reset_database()
    from models import Database

    db = Database(DATABASE_URL)
    settings = dataclasses.replace(Settings(), database_url=DATABASE_URL, redis_url=REDIS_URL,
                                   feed_size=args.feed_size, celebrity_threshold=10 * followers)
    feeds = FeedManager(redis, db, settings, Services(settings).media)  # fan-out reads no media

    author = make_id()
    follower_ids = [make_id() for _ in range(followers)]
    print(f"\nsetting up {followers:,} followers in PostgreSQL and {followers:,} feeds of "
          f"{args.feed_size} entries in Redis ...", flush=True)
    with psycopg.connect(DATABASE_URL) as connection:
        copy_users(connection, [(author, "author", 0, followers)] +
                   [(f, f"f{i}", 1, 0) for i, f in enumerate(follower_ids)])
        copy_follows(connection, [(f, author) for f in follower_ids])
        photo = make_id() + (1 << 30)  # newer than every prefilled entry
        copy_photos(connection, [(photo, author)])
        connection.commit()
    # Every feed: the sentinel and feed_size older photos, restored from one template.
    template = "feed:template"
    old = [make_id() for _ in range(args.feed_size)]
    redis.zadd(template, {"0": 0, **{str(i): float(i) for i in old}})
    dump = redis_lib.Redis.from_url(REDIS_URL).dump(template)
    raw = redis_lib.Redis.from_url(REDIS_URL)
    for start in range(0, followers, 5000):
        pipe = raw.pipeline(transaction=False)
        for f in follower_ids[start:start + 5000]:
            pipe.restore(feed_key(f), 0, dump, replace=True)
        pipe.execute()
    redis.delete(template)
    print(f"redis used_memory: {redis.info('memory')['used_memory_human']}; "
          f"encoding {redis.object('encoding', feed_key(follower_ids[0]))}")

    sha = redis.script_load(LUA_FAN_OUT)
    stop = -(args.feed_size + 1)  # as FeedManager._trim_stop
    next_photo = [photo + (1 << 40)]

    def ours() -> float:
        photo_id = next_photo[0] = next_photo[0] + 1
        start = time.perf_counter()
        for i in range(0, followers, CHUNK):
            feeds.deliver(photo_id, follower_ids[i:i + CHUNK])
        return followers / (time.perf_counter() - start)

    def lua() -> float:
        photo_id = next_photo[0] = next_photo[0] + 1
        start = time.perf_counter()
        for i in range(0, followers, CHUNK):
            keys = [feed_key(f) for f in follower_ids[i:i + CHUNK]]
            redis.evalsha(sha, len(keys), *keys, str(photo_id), repr(float(photo_id)), stop, feeds.feed_ttl)
        return followers / (time.perf_counter() - start)

    def end_to_end() -> float:
        # The real photo each time: the second and later runs rewrite the same member (ZADD: no change).
        start = time.perf_counter()
        feeds.fan_out_all(photo)
        return followers / (time.perf_counter() - start)

    runs = {"ours": [], "lua": [], "e2e": []}
    for _ in range(args.reps):  # interleaved: a noisy neighbour hits both alike
        runs["lua"].append(lua())
        runs["ours"].append(ours())
        runs["e2e"].append(end_to_end())
    last = feed_key(follower_ids[-1])  # every writer really wrote, and trimmed
    assert redis.zcard(last) == args.feed_size + 1, redis.zcard(last)
    assert redis.zrevrange(last, 0, 0) == [str(next_photo[0])], (redis.zrevrange(last, 0, 2), next_photo)
    ours_, lua_, e2e = (statistics.median(runs[k]) for k in ("ours", "lua", "e2e"))
    header(f"fan-out: one photo to {followers:,} followers, chunks of {CHUNK} (median of {args.reps})")
    row("FeedManager.deliver (pipelined)  vs Lua", ours_, lua_, "deliv/s",
        f">= {TARGET_DELIVERIES:,} and >= {TARGET_VS_LUA}x")
    row("fan_out_all incl. PostgreSQL paging vs Lua", e2e, lua_, "deliv/s", "(information)")
    passed = ours_ >= TARGET_DELIVERIES and ours_ / lua_ >= TARGET_VS_LUA
    print(f"fan-out target {'met' if passed else 'NOT met'}")
    redis.flushdb()
    db.dispose()


# -- reads --------------------------------------------------------------------
def seed_reads() -> tuple[str, int]:
    """A viewer following 100 accounts (one a celebrity) of 10 photos each; their token."""
    viewer = make_id()
    followees = [make_id() for _ in range(100)]
    photos = []
    with psycopg.connect(DATABASE_URL) as connection:
        copy_users(connection, [(viewer, "viewer", len(followees), 0)] +
                   [(f, f"followee{i}", 0, 50_000 if i == 0 else 1) for i, f in enumerate(followees)])
        copy_follows(connection, [(viewer, f) for f in followees])
        for _ in range(10):
            for f in followees:
                photos.append((make_id(), f))
        copy_photos(connection, photos)
        connection.commit()
        connection.execute("ANALYZE")  # as autovacuum would have by now: planner statistics
    return issue_token(viewer), viewer


def issue_token(viewer: int) -> str:
    """An access token (basic scope) of a bench API client, for `viewer`."""
    from app.accounts.auth import TokenService
    from models import Client, Database

    db = Database(DATABASE_URL)
    with db.session() as session:
        client = Client(client_id="bench", client_secret="bench", owner_id=viewer, name="bench",
                        redirect_uri="http://localhost/", enforce_signed_requests=False)
        session.add(client)
        session.flush()
        token = TokenService(redis_lib.Redis.from_url(REDIS_URL), 0).issue(session, viewer, client, ["basic"])
        session.commit()
    db.dispose()
    return token


def production_workers() -> int:
    """How many workers gunicorn.conf.py starts (WEB_CONCURRENCY, else its default)."""
    import runpy

    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))["workers"]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not listen on {port}")


def ensure_wrk() -> str:
    found = subprocess.run(["which", "wrk"], capture_output=True, text=True).stdout.strip()
    if not found:
        print("installing wrk (apt-get) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        found = "wrk"
    return found


def wrk(binary: str, url: str, seconds: int, connections: int) -> dict:
    out = subprocess.run([binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout

    def millis(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} error responses\n{out}")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": millis("50%"), "p99": millis("99%"), "requests": int(re.search(r"(\d+) requests in", out).group(1))}


def redis_work(redis, command: str) -> tuple[int, int, int]:
    """(calls, µs) the Redis server has spent on `command` so far (INFO
    commandstats), and the bytes it has sent to its clients."""
    stats = redis.info("commandstats").get(f"cmdstat_{command}", {})
    return stats.get("calls", 0), stats.get("usec", 0), redis.info("stats")["total_net_output_bytes"]


def bench_read(args) -> None:
    redis = redis_lib.Redis.from_url(REDIS_URL)
    redis.flushdb()
    reset_database()
    token, viewer = seed_reads()
    binary = ensure_wrk()
    media = tempfile.mkdtemp(prefix="shutter-bench-media-")
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "MEDIA_ROOT": media,
           "RATE_LIMITS_ENABLED": "false", "PYTHONPATH": str(ROOT)}
    env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="shutter-bench-metrics-")  # /metrics adds up workers
    try:
        socket.create_connection(("127.0.0.1", 11211), timeout=1).close()
        env["MEMCACHED_SERVERS"] = "127.0.0.1:11211"
    except OSError:
        print("no memcached on 127.0.0.1:11211: the cache is in-process", flush=True)
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "-w", str(args.workers), "-b", f"127.0.0.1:{PORT}", "--log-level", "warning",
         "bench.feeds_wsgi:app"], cwd=ROOT, env=env)
    try:
        wait_for_port(PORT)
        feed_url = f"http://127.0.0.1:{PORT}/v1/users/self/feed?count=20&access_token={token}"
        bare_url = f"http://127.0.0.1:{PORT}/bench/bare"
        authed_url = f"http://127.0.0.1:{PORT}/bench/authed?access_token={token}"
        large_url = f"http://127.0.0.1:{PORT}/bench/large"
        import urllib.request

        body = urllib.request.urlopen(feed_url).read()
        assert body.count(b'"type": "image"') + body.count(b'"type":"image"') == 20, body[:300]
        for url in (bare_url, authed_url, large_url, feed_url):  # warm every worker: connections, caches, feed built
            wrk(binary, url, 2, args.connections)
        runs = {"feed": [], "bare": [], "authed": [], "large": []}
        in_redis = {"feed": [0, 0, 0, 0], "authed": [0, 0, 0, 0]}  # calls, µs, bytes out, requests

        def timed(name: str, command: str, url: str) -> None:
            before = redis_work(redis, command)
            runs[name].append(wrk(binary, url, args.seconds, args.connections))
            after = redis_work(redis, command)
            for i in range(3):
                in_redis[name][i] += after[i] - before[i]
            in_redis[name][3] += runs[name][-1]["requests"]

        for _ in range(args.rounds):
            runs["bare"].append(wrk(binary, bare_url, args.seconds, args.connections))
            timed("authed", "get", authed_url)
            runs["large"].append(wrk(binary, large_url, args.seconds, args.connections))
            timed("feed", "evalsha", feed_url)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics").read().decode()
        paths = dict(re.findall(r'^shutter_feed_reads_total\{path="([^"]+)"\} ([\d.e+]+)$', metrics, re.M))
        fragments = dict(re.findall(r'^shutter_feed_fragments_total\{source="([^"]+)"\} ([\d.e+]+)$', metrics, re.M))
    finally:
        server.terminate()
        server.wait(timeout=30)
    median = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")} for k, v in runs.items()}
    feed, bare, authed, large = median["feed"], median["bare"], median["authed"], median["large"]
    header(f"GET /v1/users/self/feed, 20 items, gunicorn {args.workers} workers, wrk -c{args.connections} "
           f"{args.seconds}s x {args.rounds} (median)")
    row("requests/s      feed vs bare route", feed["rps"], bare["rps"], "req/s", f">= {TARGET_VS_BARE}x the bare route")
    row("p50 latency     feed vs bare route", feed["p50"], bare["p50"], "ms", "")
    row("p99 latency     feed vs bare route", feed["p99"], bare["p99"], "ms", f"feed p99 <= {TARGET_P99_MS} ms")
    row("requests/s      token-only route vs bare", authed["rps"], bare["rps"], "req/s", "(information)")
    row("requests/s      constant 24 KB body vs bare", large["rps"], bare["rps"], "req/s", "(information)")
    feed_us, token_us = (in_redis[k][1] / max(in_redis[k][0], 1) for k in ("feed", "authed"))
    feed_out, token_out = (in_redis[k][2] / max(in_redis[k][3], 1) for k in ("feed", "authed"))
    row("Redis time/req  feed script vs token GET", feed_us, token_us, "µs", "(information)")
    row("Redis out/req   feed vs token-only route", feed_out, token_out, "bytes", "(information)")
    print("feed reads by path (app/feeds/rendered.py): " +
          ", ".join(f"{path} {float(n):,.0f}" for path, n in sorted(paths.items())) +
          "; fragments from " + ", ".join(f"{src} {float(n):,.0f}" for src, n in sorted(fragments.items())))
    passed = feed["rps"] / bare["rps"] >= TARGET_VS_BARE and feed["p99"] <= TARGET_P99_MS
    print(f"read target {'met' if passed else 'NOT met'}")
    redis.flushdb()


SECTIONS = {"fanout": bench_fanout, "read": bench_read}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", action="append", choices=list(SECTIONS), help="repeatable (default: all)")
    parser.add_argument("--followers", type=int, default=100_000)
    parser.add_argument("--feed-size", type=int, default=160, help="entries per prefilled feed (and its cap)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, help="wrk's connections (read; default: 2 per worker)")
    parser.add_argument("--workers", type=int, help="gunicorn sync workers (read; default: gunicorn.conf.py's)")
    args = parser.parse_args(argv)
    args.workers = args.workers or production_workers()
    args.connections = args.connections or 2 * args.workers
    for name in args.section or list(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
