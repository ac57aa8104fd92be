"""Benchmark of GET /v1/media/search (the Redis search backend), beside a bare
route of the same app measured in the same run.

    .venv/bin/python bench/search.py [--photos 100000 --spread-km 20 --seconds 8 --rounds 2]

Runs against the local Redis (127.0.0.1:6379, db 14, flushed before and after)
and PostgreSQL (database shutter_bench, dropped and migrated), as
bench/feeds.py does (its helpers are reused). --photos ready photos of 1,000
public owners, taken over the last 7 days at uniform random points of a
--spread-km square around Paris, are copied into PostgreSQL and indexed
directly through the backend (RedisSearch.index_photos, batches of 5,000).
Then gunicorn (the production default of sync workers, gunicorn.conf.py)
serves bench/feeds_wsgi.py's app, and wrk (two connections per worker) asks
for the 20 newest photos within 1,000 m of the square's centre in the default
5-day window (each request: the token, one pipelined round trip of six
GEOSEARCH, the visibility filter and the hydration of 20 media from the
cache), alternating with /bench/bare, the same app's route with no auth, no
database and no Redis. Prints requests/s and p50/p99 of both and their ratio.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
import redis as redis_lib  # noqa: E402

from bench.feeds import (  # noqa: E402
    DATABASE_URL,
    PORT,
    REDIS_URL,
    copy_users,
    ensure_wrk,
    header,
    issue_token,
    production_workers,
    reset_database,
    row,
    wait_for_port,
    wrk,
)
from models.ids import SEQUENCE_BITS, SHARD_BITS, SHUTTER_EPOCH_MS, shortcode  # noqa: E402

CENTRE = (48.8566, 2.3522)
OWNERS = 1000
WEEK_MS = 7 * 86_400_000
BATCH = 5000


def photo_rows(count: int, spread_km: float, now_ms: int, rng: random.Random):
    """(id, owner, lat, lng) of `count` photos over the last week, newest last."""
    half_lat = spread_km / 2 / 111.195
    half_lng = half_lat / math.cos(math.radians(CENTRE[0]))
    for i in range(count):
        millis = now_ms - WEEK_MS + (WEEK_MS * i) // count
        photo_id = ((millis - SHUTTER_EPOCH_MS) << (SHARD_BITS + SEQUENCE_BITS)) | (i % 1024)
        yield (photo_id, 1 + rng.randrange(OWNERS), CENTRE[0] + rng.uniform(-half_lat, half_lat),
               CENTRE[1] + rng.uniform(-half_lng, half_lng))


def copy_photos(connection, photos) -> None:
    columns = ("id", "user_id", "shortcode", "status", "caption", "filter", "latitude", "longitude", "original_key",
               "original_content_type", "width", "height", "derivatives", "like_count", "comment_count",
               "attempts", "created_at", "updated_at", "ready_at")
    with connection.cursor().copy(f"COPY photos ({', '.join(columns)}) FROM STDIN") as copy:
        for photo_id, owner, lat, lng in photos:
            derivatives = {name: {"key": f"photos/{photo_id}/{name}.jpg", "width": width, "height": width}
                           for name, width in (("thumbnail", 150), ("low_resolution", 320),
                                               ("standard_resolution", 640), ("high_resolution", 1080))}
            taken = datetime.fromtimestamp(((photo_id >> 23) + SHUTTER_EPOCH_MS) / 1000, tz=timezone.utc).isoformat()
            copy.write_row((photo_id, owner, shortcode(photo_id), "ready", f"photo {photo_id}", "Normal", lat, lng,
                            f"originals/{photo_id}.jpg", "image/jpeg", 1080, 1080, json.dumps(derivatives),
                            0, 0, 1, taken, taken, taken))


def seed(args) -> str:
    """The photos in PostgreSQL and in the index; a viewer's access token."""
    from app.search.interface import PhotoDocument
    from app.search.redis_backend import RedisSearch

    redis = redis_lib.Redis.from_url(REDIS_URL, decode_responses=True)
    rng = random.Random(13)
    photos = list(photo_rows(args.photos, args.spread_km, int(time.time() * 1000), rng))
    viewer = OWNERS + 1
    with psycopg.connect(DATABASE_URL) as connection:
        copy_users(connection, [(i, f"owner{i}", 0, 0) for i in range(1, OWNERS + 1)] + [(viewer, "viewer", 0, 0)])
        copy_photos(connection, photos)
        connection.commit()
        connection.execute("ANALYZE")
    backend = RedisSearch(redis)
    started = time.perf_counter()
    for i in range(0, len(photos), BATCH):
        backend.index_photos([PhotoDocument(pid, owner, lat, lng, (pid >> 23) + SHUTTER_EPOCH_MS, False)
                              for pid, owner, lat, lng in photos[i:i + BATCH]])
    print(f"indexed {len(photos):,} photos in {time.perf_counter() - started:.1f} s", flush=True)
    return issue_token(viewer)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--spread-km", type=float, default=20.0, help="side of the square the photos are in")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, help="gunicorn sync workers (default: gunicorn.conf.py's)")
    parser.add_argument("--connections", type=int, help="wrk's connections (default: 2 per worker)")
    args = parser.parse_args(argv)
    args.workers = args.workers or production_workers()
    args.connections = args.connections or 2 * args.workers

    redis = redis_lib.Redis.from_url(REDIS_URL)
    redis.flushdb()
    reset_database()
    token = seed(args)
    binary = ensure_wrk()
    env = {**os.environ, "DATABASE_URL": DATABASE_URL, "REDIS_URL": REDIS_URL, "SEARCH_BACKEND": "redis",
           "MEDIA_ROOT": tempfile.mkdtemp(prefix="shutter-bench-media-"), "RATE_LIMITS_ENABLED": "false",
           "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="shutter-bench-metrics-")}
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "-w", str(args.workers), "-b", f"127.0.0.1:{PORT}", "--log-level",
         "warning", "bench.feeds_wsgi:app"], cwd=ROOT, env=env)
    try:
        wait_for_port(PORT)
        search_url = (f"http://127.0.0.1:{PORT}/v1/media/search?lat={CENTRE[0]}&lng={CENTRE[1]}"
                      f"&distance=1000&access_token={token}")
        bare_url = f"http://127.0.0.1:{PORT}/bench/bare"
        body = json.loads(urllib.request.urlopen(search_url).read())
        assert body["meta"]["code"] == 200 and body["data"], str(body)[:300]
        print(f"each search answers {len(body['data'])} media (20 at the default size)", flush=True)
        for url in (bare_url, search_url):  # warm every worker: connections, the cache of the media
            wrk(binary, url, 2, args.connections)
        runs = {"search": [], "bare": []}
        for _ in range(args.rounds):
            runs["bare"].append(wrk(binary, bare_url, args.seconds, args.connections))
            runs["search"].append(wrk(binary, search_url, args.seconds, args.connections))
    finally:
        server.terminate()
        server.wait(timeout=30)
    median = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")} for k, v in runs.items()}
    search, bare = median["search"], median["bare"]
    header(f"GET /v1/media/search, 1,000 m, 20 of {args.photos:,} photos in a {args.spread_km:g} km square, "
           f"gunicorn {args.workers} workers, wrk -c{args.connections} {args.seconds}s x {args.rounds} (median)")
    row("requests/s      search vs bare route", search["rps"], bare["rps"], "req/s", "(to be compared)")
    row("p50 latency     search vs bare route", search["p50"], bare["p50"], "ms", "")
    row("p99 latency     search vs bare route", search["p99"], bare["p99"], "ms", "")
    redis.flushdb()


if __name__ == "__main__":
    main()
