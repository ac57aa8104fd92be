"""gunicorn settings, read from the working directory by `gunicorn wsgi:app`."""
import os


def _cores() -> int:
    """The cores this process may run on (a container's cpuset), not the host's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


bind = f"127.0.0.1:{os.environ.get('PORT', '8000')}"
# gunicorn's own rule of thumb, 2 x cores + 1: a sync worker waiting on
# PostgreSQL or Redis holds no core, so two per core keep the cores busy
# (bench/feeds.py: with 2 workers on 2 cores, a fifth of the CPU sat idle
# under feed reads).
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * _cores() + 1)
timeout = 60
# %(U)s is the path without its query string: v1 clients send access_token
# in the query, and secrets never reach logs.
# The request id is the response's X-Request-Id (app/platform/logging.py): the access line
# is written after the request's own context is gone.
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'


def child_exit(server, worker):
    # Multiprocess metrics (PROMETHEUS_MULTIPROC_DIR): a dead worker's live gauges must
    # not be added up with the living ones'; its counters stay, as they should.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
