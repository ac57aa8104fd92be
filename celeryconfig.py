"""Celery: queues, routes, reliability and the beat schedule.

Separate queues keep slow work from starving fast work: `media` is CPU-bound
(prefork, one process per core), `io` waits on remote APIs (a gevent pool of
up to 200), `feed`, `search` and `default` do short Redis/DB work.
"""
from datetime import timedelta

from kombu import Queue

# broker_url comes from the settings (app.worker.make_celery), not from here.
# No result backend: tasks record their outcome in the database.
task_ignore_result = True

task_queues = [Queue(name) for name in ("media", "feed", "io", "search", "default")]
task_default_queue = "default"
task_routes = {
    "tasks.media.*": {"queue": "media"},
    "tasks.feeds.*": {"queue": "feed"},
    "tasks.search.*": {"queue": "search"},
    "tasks.sharing.*": {"queue": "io"},  # Twitter and Facebook: waiting on remote HTTP
    "tasks.realtime.*": {"queue": "io"},  # subscribers' callbacks: waiting on remote HTTP
    "tasks.push.*": {"queue": "io"},  # APNs: many pushes in flight over one HTTP/2 connection
    "tasks.maintenance.*": {"queue": "default"},
}

# Nothing lost: a task is acknowledged only once it has finished, and a task
# whose worker died (SIGKILL, OOM) goes back to the queue.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
broker_connection_retry_on_startup = True
# A cold shutdown (SIGQUIT; SIGTERM under the Procfile's REMAP_SIGTERM=SIGQUIT, as honcho stops
# the prefork workers) first waits this long when a task is running (Celery's soft shutdown:
# the whole time, even once it has ended), then gives what still runs back to the queue: within
# the 30 s scripts/procfile.py gives honcho's processes to stop (plain honcho gives 5). A warm shutdown (SIGTERM to the main process: systemd's units, and the
# gevent worker) waits for every running task. Not for gevent: its signal handler would sleep
# in whichever greenlet the signal interrupted, a running task's included.
worker_soft_shutdown_timeout = 5
# Connecting to a hung broker gives up after this (default 4 s): an upload
# request publishes after its commit, reconnecting up to twice, and must not
# stall for long when it can leave the work to the outbox sweeper instead.
broker_connection_timeout = 2
broker_transport_options = {
    # Redis broker: a task not acknowledged within this time is delivered again.
    "visibility_timeout": 3600,
    # Redis broker: without these a publish to a hung broker (a half-open
    # connection, a frozen server) waits forever, and with it the upload
    # request that publishes after its commit. Now it fails in seconds and
    # the outbox row waits for the sweeper (RabbitMQ: broker_connection_timeout).
    "socket_timeout": 2,
    "socket_connect_timeout": 2,
    # RabbitMQ: a publish returns once the broker has the message (publisher
    # confirms), not once it is in a socket buffer: only then may the outbox
    # mark a row delivered. (Redis answers every LPUSH anyway.)
    "confirm_publish": True,
    # Redis broker: the connections a worker may open to it (kombu's default 10). The io
    # worker's 200 greenlets ack at once, and past 10 each ack failed (MaxConnectionsError).
    "max_connections": 256,
}
task_publish_retry = True
task_publish_retry_policy = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}

# Every task's limits; the media tasks take theirs from the settings
# (PHOTO_TIME_LIMIT_SECONDS, PHOTO_SOFT_TIME_LIMIT_SECONDS: app.worker.make_celery).
task_time_limit = 300
task_soft_time_limit = 240
worker_send_task_events = True  # Flower's view of the queues
task_send_sent_event = True

timezone = "UTC"
beat_schedule = {
    # Re-publishes undelivered outbox rows and photos stuck in `processing`.
    "sweep": {"task": "tasks.maintenance.sweep", "schedule": timedelta(seconds=60)},
    # Re-ranks /media/popular into Redis (app/engagement/popular.py).
    "compute-popular": {"task": "tasks.maintenance.compute_popular", "schedule": timedelta(seconds=60)},
}
