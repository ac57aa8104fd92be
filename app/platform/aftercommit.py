"""One home for the work that follows a commit.

Domain code registers steps on the session while it works:

    unit = after_commit(session)
    unit.best_effort("rendered.forget_photos", svc.rendered.forget_photos, [photo_id])
    unit.must_happen(session, outbox.task("tasks.feeds.follow_ended", ...), now=...)

and they run once, when the commit has succeeded: the session's after-commit
event marks it, and the end of the transaction runs them (Warehouse purges
its caches from the after-commit event). A rollback, or a session closed
without committing, drops them. Each step is isolated: one that fails is
logged with its name, and neither stops the others nor raises into the
request or task, whose commit stands.

- best_effort: a miss is repaired by a TTL, a rebuild or a tombstone; the
  caller says which, beside the registration. Where nothing would repair it
  (a set that is never rebuilt while it exists), `retry_as` names a task
  that does the work later if it fails right after the commit.
- must_happen: an outbox row (app/platform/outbox.py) added in the same transaction
  names a task that does the work idempotently. After the commit the work
  is tried here at once (`now`, the same function the task calls) and the
  row is marked done; if that fails, the row is published to the broker
  (the task retries while Redis is down), and if the broker is down too,
  the sweeper publishes it later.

The steps run inside the commit call, once its connection is back in the
pool: what needs the database opens its own session (FeedManager does).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

from app.platform import outbox
from models import Outbox

log = logging.getLogger(__name__)

_KEY = "after_commit"
SERVICES = "services"  # Session.info key: the services container (app.services.Services)


@dataclass
class _Step:
    name: str
    run: Callable[[], Any]


@dataclass
class AfterCommit:
    """The steps promised by a session's current transaction."""

    services: Any = None  # app.services.Services, for steps registered by code that has none at hand
    steps: list[_Step] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)  # per transaction, e.g. activity's pending ids
    committed: bool = False  # the root transaction committed; its end runs the steps

    def best_effort(self, name: str, fn: Callable, *args, retry_as: str | None = None, **kwargs) -> None:
        """`fn(*args, **kwargs)` after the commit. `retry_as`: for a miss that
        nothing would repair, the task that does it later if it fails here
        (called with `kwargs`; see hand_to_task)."""
        self.steps.append(_Step(name, partial(self._try, fn, args, kwargs, retry_as)))

    def _try(self, fn: Callable, args: tuple, kwargs: dict, retry_as: str | None) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            if retry_as is not None:
                self.hand_to_task(retry_as, **kwargs)
            raise

    def must_happen(self, session: Session, row: Outbox, now: Callable | None = None, celery=None) -> Outbox:
        """`row` (outbox.add) is committed with the transaction; after the commit
        `now` does the work at once, or else the row's task does it (published
        with `celery`, by default the services')."""
        session.add(row)
        self.steps.append(_Step(row.kind, partial(self._do_or_deliver, row, now, celery)))
        return row

    def hand_to_task(self, kind: str, **payload) -> None:
        """A best-effort step failed: task `kind` does its work, through an outbox
        row of its own (delivered now, or by the sweeper if the broker is down).
        Committed after the transaction it follows: a crash right here loses it."""
        outbox.promise(self.services.db, self.services.celery, kind, **payload)

    def _do_or_deliver(self, row: Outbox, now: Callable | None, celery) -> None:
        if now is not None:
            try:
                now()
            except Exception as error:  # Redis is down, say: the task will do it
                log.warning("after commit: %s not done now (%s), left to its task", row.kind, type(error).__name__)
            else:
                with self.services.db.session() as session:
                    outbox.mark_done(session, row)
                return
        with self.services.db.session() as session:
            outbox.deliver(session, celery or self.services.celery, [row])

    def run(self) -> None:
        steps, self.steps, self.state = self.steps, [], {}
        for step in steps:
            try:
                step.run()
            except Exception:  # the commit stands; the step's own repair (TTL, rebuild, outbox) applies
                log.warning("after commit: step %s failed", step.name, exc_info=True)

    def drop(self) -> None:
        self.steps, self.state = [], {}


def after_commit(session: Session) -> AfterCommit:
    """The session's after-commit unit (made on first use)."""
    unit = session.info.get(_KEY)
    if unit is None:
        unit = session.info[_KEY] = AfterCommit(session.info.get(SERVICES))
    return unit


# -- the session events --------------------------------------------------------

@event.listens_for(Session, "after_commit")
def _mark_committed(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint released: the transaction goes on
        return
    unit = session.info.get(_KEY)
    if unit is not None:
        unit.committed = True


@event.listens_for(Session, "after_transaction_end")
def _run_or_drop(session: Session, transaction) -> None:
    # The end of the root transaction, its connection back in the pool (steps
    # that open a session then hold one connection, not two): a commit runs the
    # steps; a rollback, or a close without a commit, drops them, as what they
    # follow never happened.
    if transaction.parent is not None:
        return
    unit = session.info.get(_KEY)
    if unit is None:
        return
    committed, unit.committed = unit.committed, False
    if committed:
        unit.run()
    else:
        unit.drop()
