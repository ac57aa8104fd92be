"""Move photos processed before derivative tokens existed under a token.

Migration 0002 gave a token only to photos still `processing`: those processed
before it keep `derivative_token` NULL and their guessable keys
photos/<id>/<size>.jpg, so a private photo's images are reachable from its
media id. The sweeper moves a bounded batch of them each run (oldest first):

    copy       each derivative to derivative_key(id, new token, name), with no
               transaction open (a slow S3 holds no connection)
    claim      one conditional UPDATE (… AND derivative_token IS NULL) sets the
               token and the new keys; only one run can win it
    clean up   the winner's old keys go through the outbox in the same commit
               (done at once, or by tasks.media.delete_files while the storage
               is down: a left-over old key would keep the hole open); a run
               that lost deletes its own copies, which nothing references

So running it twice, or two sweepers at once, moves each photo once.
Photos still `processing` are left alone: their worker writes the keys its
snapshot of the row names.
"""
from __future__ import annotations

import logging
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.media.pipeline import derivative_key
from app.media.storage import Storage, StorageError, StorageNotFound, served_type
from app.platform import outbox
from app.platform.aftercommit import after_commit
from app.platform.changes import photo_changed
from models import Photo, begin_read
from models.media import new_derivative_token

log = logging.getLogger(__name__)

BATCH = 100  # photos per sweep (a minute): a backlog drains without holding the storage for long

_NEEDS_TOKEN = (Photo.derivative_token.is_(None), Photo.derivatives.isnot(None),
                Photo.status.in_(("ready", "failed")))


def _copy_derivatives(storage: Storage, photo_id: int, token: str, derivatives: dict) -> dict:
    """Each derivative under the token; returns the new `derivatives` JSON.
    What fails midway removes the copies made so far (best effort: unreferenced
    copies under an unguessable token are harmless)."""
    moved: dict = {}
    try:
        for name, derivative in derivatives.items():
            key = derivative_key(photo_id, token, name)
            try:
                storage.put(key, storage.get(derivative["key"]), served_type(key) or "image/jpeg")
            except StorageNotFound:  # already missing: it stays missing, but the photo still moves
                log.warning("rekey: photo %s has no %s at %s", photo_id, name, derivative["key"])
            moved[name] = {**derivative, "key": key}
    except BaseException:
        _delete_quietly(storage, [d["key"] for d in moved.values()])
        raise
    return moved


def _delete_quietly(storage: Storage, keys: list[str]) -> None:
    try:
        storage.delete(keys)
    except StorageError as error:
        log.warning("rekey: unreferenced copies %s not removed (%s)", keys, type(error).__name__)


def rekey_photo(session: Session, storage: Storage, photo_id: int, celery=None) -> bool:
    """Move one photo's derivatives under a new token. False when there was
    nothing to do (it has a token, no derivatives, is gone, or another run won).
    Raises StorageError when the storage fails before the claim (nothing changed)."""
    begin_read(session)  # no write lock on SQLite for the look
    row = session.execute(select(Photo.derivatives).where(Photo.id == photo_id, *_NEEDS_TOKEN)).first()
    session.commit()  # nothing is held while the files are copied
    if row is None:
        return False
    token = new_derivative_token()
    moved = _copy_derivatives(storage, photo_id, token, row.derivatives)
    claimed = session.execute(
        update(Photo).where(Photo.id == photo_id, *_NEEDS_TOKEN)
        .values(derivative_token=token, derivatives=moved)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not claimed:  # another run moved it first, or it was deleted meanwhile
        session.rollback()
        _delete_quietly(storage, [d["key"] for d in moved.values()])
        return False
    old_keys = list(dict.fromkeys(d["key"] for d in row.derivatives.values()))
    after_commit(session).must_happen(session, outbox.task("tasks.media.delete_files", keys=old_keys),
                                      now=partial(storage.delete, old_keys), celery=celery)
    photo_changed(session, photo_id)  # cached and rendered copies still carry the old URLs
    session.commit()
    return True


def rekey_batch(session: Session, storage: Storage, batch: int = BATCH, celery=None) -> int:
    """Up to `batch` photos without a token, oldest first; how many moved.
    A storage error stops the batch (logged, not raised): the next sweep goes on."""
    begin_read(session)
    photo_ids = session.scalars(select(Photo.id).where(*_NEEDS_TOKEN).order_by(Photo.id).limit(batch)).all()
    session.commit()
    moved = 0
    for photo_id in photo_ids:
        try:
            moved += rekey_photo(session, storage, photo_id, celery)
        except StorageError as error:
            log.warning("rekey: storage failed at photo %s (%s), the rest waits for the next sweep",
                        photo_id, type(error).__name__)
            break
    return moved
