"""Benchmark of push notifications (app/push) to the local APNs provider, beside a
baseline measured in the same run.

    .venv/bin/python bench/push.py [--notifications 2000] [--reps 3] [--concurrency 200]

  io pool    notifications/s delivered by a real Celery worker (`-P gevent -c 200 -Q io`,
             as production runs the io queue) consuming tasks.push.deliver messages over
             the worker's one HTTP/2 connection (the provider's streams multiplexed):
             from the first message published to the last 200 the provider answered,
             the publishing included.
  greenlets  the same notifications sent by 200 greenlets of one gevent-patched process
             (a separate one) through the same ApnsProvider, no Celery: what the
             multiplexed connection gives by itself.
  baseline   the same notifications sent one at a time through the same ApnsProvider
             over one synchronous HTTP/2 connection from this process.

Each rep runs both; the median of --reps is printed with the ratio. The provider is
tests/apns_server.py (TLS, HTTP/2, every provider token verified) in a process of its
own, so its CPU is not the sender's; the broker is the local Redis (db 11).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from app.config import Settings  # noqa: E402
from app.push.apns import SENT, Notification  # noqa: E402
from app.services import Services  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/11"
# RabbitMQ, as production runs it (on a Redis broker the pool of 200 ran out of broker connections to ack with: README)
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672//"
TOPIC = "com.example.shutter"


# -- the provider, in a process of its own --------------------------------------------------
def serve(directory: str) -> None:
    """Start the local APNs server; answer `count` with '<answered 200> <connections>' on stdout."""
    from tests.apns_server import ApnsServer

    server = ApnsServer(Path(directory)).start()
    print(json.dumps({"port": server.port, "key_file": str(server.key_file), "ca_file": str(server.ca_file)}),
          flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            with server.lock:
                sent = server.answered.get(200, 0)
                errors = sum(server.answered.values()) - sent
            print(f"{sent} {server.connections} {errors}", flush=True)
    server.stop()


class Provider:
    def __init__(self, directory: str) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--serve", directory], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.process.stdout.readline())

    def count(self) -> tuple[int, int, int]:
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        sent, connections, errors = map(int, self.process.stdout.readline().split())
        return sent, connections, errors

    def wait_for(self, sent: int, timeout: float = 300.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got, _connections, errors = self.count()
            if errors:
                raise RuntimeError(f"the provider refused {errors} pushes")
            if got >= sent:
                return time.perf_counter()
            time.sleep(0.005)
        raise RuntimeError(f"only {got} of {sent} pushes arrived")

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(10)


def notifications(n: int, rep: int) -> list[Notification]:
    expiration = int(time.time()) + 3600
    return [Notification(f"{i:064x}", "production", TOPIC,
                         {"aps": {"alert": f"user{i} liked your photo.", "badge": 1, "sound": "default"},
                          "shutter": {"type": "like", "media_id": str(rep * n + i)}},
                         expiration, f"photo-{rep * n + i}") for i in range(n)]


def greenlets(settings_json: str, n: int, rep: int, concurrency: int) -> None:
    """In a process of its own, monkey-patched first: print the notifications/s of `concurrency`
    greenlets sending a batch through one provider."""
    from gevent import monkey

    monkey.patch_all()
    from gevent.pool import Pool

    services = Services(Settings(**json.loads(settings_json)))
    warm = notifications(concurrency, 997)
    Pool(concurrency).map(services.apns.send, warm)
    batch = notifications(n, rep)
    start = time.perf_counter()
    results = Pool(concurrency).map(lambda note: services.apns.send(note).result, batch)
    elapsed = time.perf_counter() - start
    assert set(results) == {SENT}, set(results)
    print(n / elapsed, flush=True)


def in_greenlets(settings: Settings, n: int, rep: int, concurrency: int) -> float:
    output = subprocess.run([sys.executable, __file__, "--greenlets", json.dumps(dataclasses.asdict(settings)),
                             "--notifications", str(n), "--rep", str(rep), "--concurrency", str(concurrency)],
                            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return float(output.split()[-1])


# -- the ways --------------------------------------------------------------------------
def io_pool(services: Services, provider: Provider, batch: list[Notification]) -> float:
    already, _c, _e = provider.count()
    celery = services.celery
    start = time.perf_counter()
    with celery.producer_or_acquire() as producer:
        for n in batch:
            celery.send_task("tasks.push.deliver", kwargs={"notification": n.as_dict(), "queued_at": time.time()},
                             producer=producer)
    end = provider.wait_for(already + len(batch))
    return len(batch) / (end - start)


def one_at_a_time(services: Services, provider: Provider, batch: list[Notification]) -> float:
    already, _c, _e = provider.count()
    send = services.apns.send
    start = time.perf_counter()
    for n in batch:
        assert send(n).result == SENT
    elapsed = time.perf_counter() - start
    assert provider.count()[0] == already + len(batch)
    return len(batch) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notifications", type=int, default=2000, help="per way and rep")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=200, help="the io worker's gevent pool")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # the provider's process
    parser.add_argument("--greenlets", help=argparse.SUPPRESS)  # the greenlets' process: its settings
    parser.add_argument("--rep", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.greenlets:
        greenlets(args.greenlets, args.notifications, args.rep, args.concurrency)
        return

    from tests.workers import Worker

    directory = Path(tempfile.mkdtemp(prefix="shutter-bench-push-"))
    provider = Provider(str(directory))
    settings = dataclasses.replace(
        Settings(), database_url=f"sqlite:///{directory / 'unused.db'}", redis_url=REDIS_URL,
        celery_broker_url=BROKER_URL, apns_key_id="KEY1234567", apns_team_id="TEAM123456",
        apns_key_file=provider.info["key_file"], apns_topic=TOPIC, apns_host="127.0.0.1",
        apns_sandbox_host="127.0.0.1", apns_port=provider.info["port"], apns_ca_file=provider.info["ca_file"])
    redis.Redis.from_url(REDIS_URL).flushdb()
    worker = Worker(settings, directory, concurrency=args.concurrency, queues="io", pool="gevent")
    services = Services(settings)
    pooled, bare, single = [], [], []
    try:
        worker.start()
        io_pool(services, provider, notifications(200, 999))  # warm: the worker's connection and token
        one_at_a_time(services, provider, notifications(50, 998))  # and this process's
        for rep in range(args.reps):
            batch = notifications(args.notifications, rep)
            pooled.append(io_pool(services, provider, batch))
            bare.append(in_greenlets(settings, args.notifications, rep, args.concurrency))
            single.append(one_at_a_time(services, provider, batch))
            print(f"rep {rep + 1}: io pool {pooled[-1]:,.0f}/s, greenlets {bare[-1]:,.0f}/s, "
                  f"one at a time {single[-1]:,.0f}/s", flush=True)
        _sent, connections, _errors = provider.count()
    finally:
        worker.stop()
        services.close()
        provider.stop()
    pool_rate, bare_rate, single_rate = (statistics.median(r) for r in (pooled, bare, single))
    print(f"\npush: {args.notifications} notifications x {args.reps} reps (median), "
          f"{connections} TCP connections to the provider in all (the worker's, the greenlet "
          f"processes' and this process's)")
    print(f"  io pool: Celery worker, gevent -c {args.concurrency}, one HTTP/2 connection "
          f"{pool_rate:>8,.0f}/s  {pool_rate / single_rate:.2f}x the baseline")
    print(f"  {args.concurrency} greenlets, one HTTP/2 connection, no Celery       "
          f"{bare_rate:>8,.0f}/s  {bare_rate / single_rate:.2f}x the baseline")
    print(f"  baseline: one at a time, one synchronous connection    {single_rate:>8,.0f}/s")


if __name__ == "__main__":
    main()
