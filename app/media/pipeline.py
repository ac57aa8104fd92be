"""The upload pipeline: accept a photo, make its derivatives, publish it.

    accept_upload     (API)     validate, store the original (no transaction
                                open), then insert photo + outbox row in one
                                transaction, publish after commit
    process_photo     (media)   decode once, derivatives + blurhash, store them
    publish_photo     (media)   mark `ready`, then the downstream group
    mark_failed       (media)   a photo that cannot be processed, with the reason
    delete_photo      (API)     the photo, its files, and what references it
    sweep             (beat)    re-publish what a dead broker or worker dropped

Every step is idempotent: keys are derived from the photo id and its stored
derivative token, and status changes are conditional UPDATEs, so running any
of them twice is harmless.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.engagement import activity, tags
from app.media import imaging
from app.media.storage import Storage, StorageError
from app.platform import metrics, outbox
from app.platform.aftercommit import after_commit
from app.platform.changes import photo_changed, photo_listed, profiles_changed
from models import Location, Photo, PhotoTag, Tag, User, utcnow
from models.ids import shortcode

log = logging.getLogger(__name__)

ORIGINALS = "originals"  # never served: originals keep their EXIF and GPS
PHOTOS = "photos"
STUCK_AFTER = timedelta(minutes=5)
MAX_ATTEMPTS = 6  # a photo that keeps killing its worker (OOM, …) is failed, not retried forever
OUTBOX_GRACE = timedelta(seconds=30)


@dataclass
class UploadFields:
    caption: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_name: str | None = None
    filter: str = "Normal"
    share_to: list[str] | None = None
    idempotency_key: str | None = None


def original_key(photo_id: int, extension: str) -> str:
    return f"{ORIGINALS}/{photo_id}.{extension}"


def derivative_key(photo_id: int, token: str | None, name: str) -> str:
    """Where a derivative lives: under the photo's unguessable token (rows from
    before tokens, token None, used photos/<id>/<name>.jpg)."""
    if token is None:
        return f"{PHOTOS}/{photo_id}/{name}.jpg"
    return f"{PHOTOS}/{photo_id}/{token}/{name}.jpg"


def every_derivative_key(photo_id: int, token: str | None) -> list[str]:
    """All the derivative keys a photo can have, whatever a snapshot of its row says."""
    return [derivative_key(photo_id, token, name) for name in imaging.DERIVATIVE_NAMES]


def downstream_task_names(share_to: list[str] | None = None,
                          share_networks: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """What a photo that became ready sets off. Each feature adds its task here
    when it exists (fan-out, search, subscribers, push, share). A share task only
    for a network the upload named in share_to that is on (`share_networks`)."""
    shares = [f"tasks.sharing.share_{network}" for network in (share_to or []) if network in share_networks]
    return ["tasks.feeds.fan_out", "tasks.search.index_photo", "tasks.realtime.notify_subscribers", *shares]


def _find_by_idempotency_key(session: Session, user_id: int, key: str | None) -> Photo | None:
    if not key:
        return None
    return session.scalar(select(Photo).where(Photo.user_id == user_id, Photo.idempotency_key == key))


def _location(session: Session, fields: UploadFields) -> int | None:
    if fields.location_name is None or fields.latitude is None or fields.longitude is None:
        return None
    existing = session.scalar(select(Location.id).where(
        Location.name == fields.location_name,
        Location.latitude == fields.latitude, Location.longitude == fields.longitude))
    if existing:
        return existing
    location = Location(name=fields.location_name, latitude=fields.latitude, longitude=fields.longitude)
    session.add(location)
    session.flush()
    return location.id


def accept_upload(session: Session, storage: Storage, celery, user: User, data: bytes,
                  fields: UploadFields, max_pixels: int) -> tuple[Photo, bool]:
    """Store an upload and promise its processing. Returns (photo, created).

    The original is stored while no transaction is open (a slow S3 would
    otherwise hold a database connection idle in transaction, pinning a
    pgbouncer server connection), then the photo and its outbox row are
    committed together, so a row never points at nothing. Raises
    imaging.ImageRejected for a file that is not an acceptable image, and
    StorageError when the storage fails (the API answers 503).
    """
    user_id = user.id
    replay = _find_by_idempotency_key(session, user_id, fields.idempotency_key)
    if replay is not None:
        return replay, False
    info = imaging.inspect_upload(data, max_pixels)
    photo_id = session.scalar(select(func.shutter_next_id()))
    session.commit()  # ends the read transaction: nothing is held while the original is stored
    key = original_key(photo_id, info.extension)
    storage.put(key, data, info.content_type)
    try:
        photo = _insert_photo(session, celery, user_id, photo_id, key, info, fields)
    except IntegrityError:
        # The same Idempotency-Key raced in from a retry: the first one wins.
        _undo_upload(session, storage, celery, key)
        replay = _find_by_idempotency_key(session, user_id, fields.idempotency_key)
        if replay is None:
            raise
        return replay, False
    except BaseException:
        _undo_upload(session, storage, celery, key)
        raise
    return photo, True


def _insert_photo(session: Session, celery, user_id: int, photo_id: int, key: str, info: imaging.ImageInfo,
                  fields: UploadFields) -> Photo:
    """The photo, its tags and mentions, and its outbox row, in one commit
    (the row is published after it: app/platform/aftercommit.py)."""
    photo = Photo(
        id=photo_id, user_id=user_id, shortcode=shortcode(photo_id), status="processing",
        caption=fields.caption, filter=fields.filter or "Normal",
        latitude=fields.latitude, longitude=fields.longitude, location_id=_location(session, fields),
        original_key=key, original_content_type=info.content_type,
        share_to=fields.share_to or None, idempotency_key=fields.idempotency_key,
    )
    row = outbox.add(session, outbox.PROCESS_PHOTO, photo_id)
    session.add(photo)
    session.flush()  # the photo row before its outbox row (foreign key)
    tags.attach(session, photo_id, fields.caption)
    # Mentioned users see the activity once the photo is published (app.engagement.activity.page).
    activity.record_mentions(session, user_id, photo, fields.caption)
    after_commit(session).must_happen(session, row, celery=celery)
    metrics.count_after_commit(session, metrics.UPLOADS.labels(info.format))
    session.commit()
    return photo


def _undo_upload(session: Session, storage: Storage, celery, key: str) -> None:
    """The upload's transaction failed: what it recorded never happened (its
    pending activity included), and its stored original goes: now, or else by
    tasks.media.delete_files (retried until the storage answers)."""
    try:
        session.rollback()
        activity.discard_pending(session)
    finally:  # even when the database is what failed
        try:
            storage.delete([key])
        except StorageError as error:
            log.warning("original %s of a failed upload not removed now (%s)", key, type(error).__name__)
            _promise_removal(session, celery, key)


def _promise_removal(session: Session, celery, key: str) -> None:
    try:
        row = outbox.task("tasks.media.delete_files", keys=[key])
        session.add(row)
        session.commit()
        outbox.deliver(session, celery, [row])
    except Exception as error:  # the database is down too: never served, see README
        session.rollback()
        log.error("original %s of a failed upload left in storage (%s)", key, type(error).__name__)


@contextmanager
def _storage_step(session: Session, photo_id: int):
    """Storage work of process_photo. When the storage fails or is too slow (past
    the soft time limit), not the photo, the run ended in a known way and the task
    retries it, so its attempt is given back: MAX_ATTEMPTS stops photos that kill
    their worker or are slow to decode; counting retries too failed every photo
    uploaded during a one-minute S3 outage."""
    try:
        yield
    except (StorageError, SoftTimeLimitExceeded):
        session.execute(update(Photo).where(Photo.id == photo_id, Photo.attempts > 0)
                        .values(attempts=Photo.attempts - 1))
        session.commit()
        raise


def process_photo(session: Session, storage: Storage, photo_id: int) -> bool:
    """Make and store the derivatives. False when there is nothing to do."""
    photo = session.get(Photo, photo_id)
    if photo is None or photo.status != "processing":
        return False  # deleted meanwhile, or a duplicate delivery of finished work
    if photo.attempts >= MAX_ATTEMPTS:
        mark_failed(session, photo_id, f"gave up after {photo.attempts} attempts", metrics.FAILED_TOO_MANY_ATTEMPTS)
        return False
    # Counted before the work, so a run that kills its worker still counts;
    # updated_at too, so the sweeper leaves alone a photo that is being worked on.
    session.execute(update(Photo).where(Photo.id == photo_id)
                    .values(attempts=Photo.attempts + 1, updated_at=utcnow()))
    session.commit()
    with _storage_step(session, photo_id):
        original = storage.get(photo.original_key)
    # A soft time limit here counts as an attempt: the photo itself is slow,
    # and MAX_ATTEMPTS ends it instead of a retry forever.
    result = imaging.make_derivatives(original)
    derivatives = {}
    with _storage_step(session, photo_id):
        for name, derivative in result.derivatives.items():
            key = derivative_key(photo_id, photo.derivative_token, name)
            storage.put(key, derivative.data, derivative.content_type)
            derivatives[name] = {"key": key, "width": derivative.width, "height": derivative.height}
    changed = session.execute(
        update(Photo).where(Photo.id == photo_id, Photo.status == "processing")
        .values(derivatives=derivatives, blurhash=result.blurhash, width=result.width,
                height=result.height, updated_at=utcnow())
    ).rowcount
    session.commit()
    if not changed:  # deleted while we worked: don't leave its files behind
        storage.delete(d["key"] for d in derivatives.values())
    return bool(changed)


def publish_photo(session: Session, celery, photo_id: int, feeds=None,
                  share_networks: frozenset[str] | set[str] = frozenset()) -> bool:
    """processing → ready, once; the downstream work is promised in the same commit.

    `feeds` (app.feeds.manager.FeedManager): the author's own feed gets the photo at
    once, not behind the feed queue; fan_out does it again if this fails.
    `share_networks`: the networks sharing is on for (app.sharing): the photo's
    share_to among them get their share task.
    """
    photo = session.get(Photo, photo_id)
    if photo is None or photo.status != "processing" or not photo.derivatives:
        return False
    ready_at = utcnow()
    changed = session.execute(
        update(Photo).where(Photo.id == photo_id, Photo.status == "processing")
        .values(status="ready", ready_at=ready_at, updated_at=ready_at)
    ).rowcount
    if not changed:
        session.rollback()
        return False
    metrics.count_after_commit(session, metrics.PHOTOS_READY)
    metrics.observe_after_commit(session, metrics.UPLOAD_TO_READY, (ready_at - photo.created_at).total_seconds())
    session.execute(update(User).where(User.id == photo.user_id).values(media_count=User.media_count + 1))
    profiles_changed(session, [photo.user_id])
    tags.count_photo(session, photo_id, +1)
    photo_listed(session, photo_id, photo.user_id, tags.names_of(session, photo_id), photo.location_id, True)
    unit = after_commit(session)
    if feeds is not None:  # a miss is repaired by fan_out, which does it again
        unit.best_effort("feeds.add_own", feeds.add_own, photo_id, photo.user_id)
    unit.must_happen(session, outbox.add(session, outbox.PUBLISH_PHOTO, photo_id,
                                            tasks=downstream_task_names(photo.share_to, share_networks)),
                     celery=celery)
    session.commit()
    return True


def mark_failed(session: Session, photo_id: int, reason: str, kind: str = metrics.FAILED_TASK_ERROR) -> None:
    """processing → failed, with `reason` (stored) and its `kind` (the metric's label, metrics.FAILED_*)."""
    changed = session.execute(
        update(Photo).where(Photo.id == photo_id, Photo.status == "processing")
        .values(status="failed", failure_reason=reason[:500], updated_at=utcnow())
    ).rowcount
    if changed:  # once per photo, whoever fails it
        metrics.count_after_commit(session, metrics.PHOTOS_FAILED.labels(kind))
    session.commit()


def _delete_row(session: Session, photo_id: int):
    """DELETE … RETURNING: what the row was when it went, or None when it was already gone.

    The row as deleted, not a snapshot loaded earlier: a concurrent delete gets None, and
    derivatives a worker stored meanwhile are in what it returns."""
    # The tags before the delete: the photo's tag links go with it (ON DELETE CASCADE).
    tag_rows = session.execute(select(PhotoTag.tag_id, Tag.name).join(Tag, Tag.id == PhotoTag.tag_id)
                               .where(PhotoTag.photo_id == photo_id)).all()
    gone = session.execute(
        delete(Photo).where(Photo.id == photo_id)
        .returning(Photo.user_id, Photo.status, Photo.original_key, Photo.derivatives, Photo.derivative_token,
                   Photo.location_id)
        .execution_options(synchronize_session=False)
    ).first()
    return gone, tag_rows


def _stored_keys(photo_id: int, gone) -> list[str]:
    """Every key the photo can have: the original, each derivative name under its token
    (a worker may store them after any snapshot), and those its row listed (older layouts)."""
    listed = [d["key"] for d in (gone.derivatives or {}).values()]
    every = every_derivative_key(photo_id, gone.derivative_token)
    return list(dict.fromkeys([gone.original_key, *every, *listed]))


def delete_photo(session: Session, storage: Storage, photo: Photo, celery=None, search=None) -> bool:
    """Remove a photo and its files; rows that reference it go by ON DELETE CASCADE.
    False when it was already gone (a concurrent or repeated delete): nothing is counted twice.

    Only `photo.id` is used: the photo may be a cached or stale snapshot, so what is
    counted and removed comes from the row as it is deleted.

    With `celery`, its removal from feeds is promised in the same commit
    (tasks.feeds.remove_photo; the outbox row cannot reference the deleted photo),
    and its removal from the search index (tasks.search.remove_photo; done at once
    after the commit with `search`, app.search.service.SearchService).
    """
    photo_id = photo.id
    gone, tag_rows = _delete_row(session, photo_id)
    if gone is None:
        session.rollback()
        return False
    was_ready = gone.status == "ready"
    if was_ready:  # counted only by the delete that really removed the row
        tags.count_tags(session, [row.tag_id for row in tag_rows], -1)
        photo_listed(session, photo_id, gone.user_id, sorted(row.name for row in tag_rows), gone.location_id, False)
        session.execute(update(User).where(User.id == gone.user_id).values(media_count=User.media_count - 1))
        profiles_changed(session, [gone.user_id])
    unit = after_commit(session)
    if celery is not None and was_ready:
        unit.must_happen(session, outbox.task("tasks.feeds.remove_photo", photo_id=photo_id, user_id=gone.user_id),
                         celery=celery)
        # (its tags' counts reach the index through tags.count_tags, above)
        unit.must_happen(session, outbox.task("tasks.search.remove_photo", photo_id=photo_id),
                         now=partial(search.remove_photo, photo_id) if search is not None else None,
                         celery=celery)
    # The files' removal is promised in the same commit too (the derivatives are
    # public URLs, and the original keeps the uploader's GPS): done at once after
    # it, or by the task (then the sweeper) while S3 is down.
    keys = _stored_keys(photo_id, gone)
    unit.must_happen(session, outbox.task("tasks.media.delete_files", keys=keys),
                     now=partial(storage.delete, keys), celery=celery)
    photo_changed(session, photo_id)
    session.commit()
    return True


REPROCESSABLE = ("failed", "processing")


def reprocess(session: Session, celery, status: str, batch: int = 500):
    """Re-publish the media chain of every photo in `status` through the outbox (an
    operator's `shutter reprocess-photos`): a failed photo goes back to `processing` with
    its attempts reset. Yields how many each batch re-published."""
    if status not in REPROCESSABLE:
        raise ValueError(f"status must be one of {REPROCESSABLE}, not {status!r}")
    after = 0
    while True:
        ids = session.scalars(select(Photo.id).where(Photo.status == status, Photo.id > after)
                              .order_by(Photo.id).limit(batch)).all()
        if not ids:
            return
        after = ids[-1]
        session.execute(update(Photo).where(Photo.id.in_(ids), Photo.status == status)
                        .values(status="processing", attempts=0, failure_reason=None, updated_at=utcnow()))
        rows = [outbox.add(session, outbox.PROCESS_PHOTO, photo_id) for photo_id in ids]
        session.add_all(rows)
        session.commit()
        outbox.deliver(session, celery, rows)  # what the broker refuses, the sweeper sends
        yield len(ids)


def count_in_status(session: Session, status: str) -> int:
    return session.scalar(select(func.count(Photo.id)).where(Photo.status == status))


def oldest_processing(session: Session) -> tuple[int, object] | None:
    """The photo that has waited longest in `processing`: (id, last touched), or None."""
    row = session.execute(select(Photo.id, Photo.updated_at).where(Photo.status == "processing")
                          .order_by(Photo.updated_at).limit(1)).first()
    return tuple(row) if row else None


def sweep(session: Session, celery, stuck_after: timedelta = STUCK_AFTER,
          outbox_grace: timedelta = OUTBOX_GRACE) -> dict:
    """Re-publish undelivered outbox rows and photos stuck in `processing`.

    A photo is stuck when its worker died and the broker will not redeliver
    soon (a Redis broker waits for its visibility timeout).
    """
    delivered = outbox.deliver_pending(session, celery, outbox_grace)
    stuck = session.scalars(
        select(Photo.id).where(Photo.status == "processing", Photo.updated_at < utcnow() - stuck_after).limit(500)
    ).all()
    rows = []
    for photo_id in stuck:
        session.execute(update(Photo).where(Photo.id == photo_id).values(updated_at=utcnow()))
        rows.append(outbox.add(session, outbox.PROCESS_PHOTO, photo_id))
    session.add_all(rows)
    session.commit()
    if rows:
        log.info("sweeper: re-publishing %d photos stuck in processing", len(rows))
        outbox.deliver(session, celery, rows)
    return {"outbox": delivered, "stuck": len(stuck)}
