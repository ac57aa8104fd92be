"""Benchmark of real-time subscription deliveries (app/realtime), beside a baseline
measured in the same run.

    .venv/bin/python bench/realtime.py [--deliveries 2000] [--reps 5] [--batch 1]

  deliver   deliveries/s of SubscriptionService.deliver to a local callback: the
            still-enabled subscriptions of the batch read from PostgreSQL, the JSON
            update array signed (X-Hub-Signature), POSTed through the guarded HTTP
            client (the callback's name resolved and checked, a kept-alive
            connection), beside a plain loop of httpx POSTs of the same body to the
            same callback from the same process (no database, no signature, no guard).
            Interleaved, median of --reps. The callback is a separate process (an
            HTTP/1.1 keep-alive server answering 200), so its CPU is not this one's.

Runs against the local PostgreSQL (database shutter_bench_realtime, dropped and migrated).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from app.config import Settings  # noqa: E402
from app.realtime.callbacks import NO_DELAY  # noqa: E402
from app.realtime.subscriptions import hub_signature  # noqa: E402
from app.services import Services  # noqa: E402
from bench.stack import free_port  # noqa: E402
from models import Client, Subscription, User  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "shutter_bench_realtime"
DATABASE_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{DB_NAME}"


# -- the callback, in a process of its own -------------------------------------------
class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, for both loops alike
    disable_nagle_algorithm = True  # its answer's headers and body leave at once

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


def serve(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _Ok).serve_forever()


def start_callback() -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=ROOT)
    url = f"http://127.0.0.1:{port}/callback"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.post(url, content=b"[]")
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the callback server did not start")


# -- set-up --------------------------------------------------------------------------
def reset_database() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {DB_NAME}")
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", DATABASE_URL)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def seed(services: Services, callback_url: str, batch: int) -> tuple[int, list[dict], str]:
    """A client with `batch` user subscriptions to the callback; one update each."""
    with services.db.session() as session:
        owner = User(username="dev", username_key="dev", email="dev@example.com", email_key="dev@example.com",
                     password_hash="x")
        session.add(owner)
        session.flush()
        client = Client(client_id="bench", client_secret="bench-secret", owner_id=owner.id, name="bench",
                        redirect_uri="http://127.0.0.1/cb")
        session.add(client)
        session.flush()
        subscriptions = [Subscription(client_pk=client.id, object="user", aspect="media", callback_url=callback_url,
                                      verify_token="") for _ in range(batch)]
        session.add_all(subscriptions)
        session.commit()
        updates = [{"object": "user", "object_id": str(owner.id), "aspect": "media", "changed_aspect": "media",
                    "time": int(time.time()), "subscription_id": str(s.id),
                    "data": {"media_id": f"{1000 + i}_{owner.id}"}} for i, s in enumerate(subscriptions)]
        return client.id, updates, client.client_secret


# -- the two loops ---------------------------------------------------------------------
def ours(services: Services, client_pk: int, url: str, updates: list[dict], n: int) -> float:
    deliver = services.subscriptions.deliver
    start = time.perf_counter()
    for _ in range(n):
        assert deliver(client_pk, url, updates)
    return n / (time.perf_counter() - start)


def plain(http: httpx.Client, url: str, body: bytes, headers: dict, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        assert http.post(url, content=body, headers=headers).status_code == 200
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deliveries", type=int, default=2000, help="POSTs per loop and rep")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1, help="updates per POST (subscriptions of one callback)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the callback process
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)

    reset_database()
    process, url = start_callback()
    settings = dataclasses.replace(Settings(), database_url=DATABASE_URL,
                                   subscription_callback_allowed_networks=["127.0.0.1/32"])
    services = Services(settings)
    try:
        client_pk, updates, secret = seed(services, url, args.batch)
        body = json.dumps(updates, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature": hub_signature(secret, body)}
        # The baseline's sockets are TCP_NODELAY too, as the guarded client's (app/realtime/callbacks.py).
        transport = httpx.HTTPTransport(socket_options=NO_DELAY)
        with httpx.Client(trust_env=False, transport=transport) as http:
            ours(services, client_pk, url, updates, 200)  # warm: connections, statements
            plain(http, url, body, headers, 200)
            measured = {"ours": [], "plain": []}
            for _ in range(args.reps):
                measured["ours"].append(ours(services, client_pk, url, updates, args.deliveries))
                measured["plain"].append(plain(http, url, body, headers, args.deliveries))
        mine, baseline = statistics.median(measured["ours"]), statistics.median(measured["plain"])
        print(f"\n== deliveries to a local callback ({args.batch} update(s) per POST, "
              f"median of {args.reps} x {args.deliveries:,}) ==")
        print(f"{'SubscriptionService.deliver':<40}{mine:>12,.0f} POSTs/s")
        print(f"{'plain httpx POST loop (baseline)':<40}{baseline:>12,.0f} POSTs/s")
        print(f"{'ratio':<40}{mine / baseline:>12.2f}x")
        print(f"(updates/s: {mine * args.batch:,.0f}; runs: ours {[round(x) for x in measured['ours']]}, "
              f"plain {[round(x) for x in measured['plain']]})")
    finally:
        services.close()
        process.kill()
        process.wait()


if __name__ == "__main__":
    main()
