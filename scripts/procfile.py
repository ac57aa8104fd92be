"""`honcho` for the Procfile (`make run-production-layout`), with time for a warm shutdown.

    .venv/bin/python scripts/procfile.py start -f Procfile    # any honcho command and options

honcho stops its processes with SIGTERM to each one's process group and SIGKILLs whatever
is left 5 s after the first one stopped (honcho.manager.KILL_WAIT, no option sets it). The io
queue's gevent worker needs more for its warm shutdown: Celery's loop for green pools reads
the broker in 2 s waits, and once more after the signal, before it closes its connections
(4 to 7 s measured, idle, on both brokers); the prefork workers' soft shutdown
(celeryconfig.worker_soft_shutdown_timeout) needs its seconds too.
"""
from __future__ import annotations

import sys

from honcho import command, manager

STOP_SECONDS = 30  # from the first process stopped to honcho's SIGKILL

if __name__ == "__main__":
    manager.KILL_WAIT = STOP_SECONDS
    sys.exit(command.main())
