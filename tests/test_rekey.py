"""Issue 11, item 2 for existing data: photos processed before derivative tokens
(migration 0002) are moved under a token by the sweeper (app/media/rekey.py), on
local storage and on S3 (moto over HTTP); both stacks.

A pre-0002 photo is made the way old rows look: a processed photo whose files
are moved back to photos/<id>/<size>.jpg and whose row says so, token NULL.
"""
from __future__ import annotations

import os

import pytest
from sqlalchemy import event, update
from sqlalchemy.orm import Session

from app.media import rekey
from app.media.storage import LocalStorage, StorageNotFound
from models import Photo
from tests.support import Shutter
from tests.test_feeds import post_photo, services_of
from tests.test_media_api import IMAGE_NAMES, photo_row


@pytest.fixture(params=["local", "s3"])
def shutter(request, make_app):
    if request.param == "local":
        return Shutter(make_app().test_client())
    s3_storage, moto_s3_url = request.getfixturevalue("s3_storage"), request.getfixturevalue("moto_s3_url")
    return Shutter(make_app(storage_backend="s3", s3_bucket=s3_storage.bucket, s3_prefix="media",
                            s3_endpoint_url=moto_s3_url).test_client())


# --- helpers ---------------------------------------------------------------


def stored_keys(services) -> set[str]:
    """Every object the storage holds, as keys."""
    storage = services.storage
    if isinstance(storage, LocalStorage):
        found = set()
        for directory, _dirs, files in os.walk(storage.root):
            for name in files:
                found.add(os.path.relpath(os.path.join(directory, name), storage.root).replace(os.sep, "/"))
        return found
    listing = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix=f"{storage.prefix}/")
    return {item["Key"].removeprefix(f"{storage.prefix}/") for item in listing.get("Contents", [])}


def fetch(shutter, services, key: str) -> tuple[int, bytes]:
    """A key as it is served: GET /media for local storage; on S3 (moto refuses
    unsigned reads) the object itself, 404 when there is none."""
    if isinstance(services.storage, LocalStorage):
        response = shutter.client.get(services.storage.url(key))
        return response.status_code, response.data
    try:
        return 200, services.storage.get(key)
    except StorageNotFound:
        return 404, b""


def urls_name(services, images: dict, keys) -> bool:
    """The images' URLs are exactly the keys' public URLs (local ones are made absolute)."""
    wanted = sorted(services.storage.url(k) for k in keys)
    got = sorted(image["url"] for image in images.values())
    return len(got) == len(wanted) and all(g.endswith(w) for g, w in zip(got, wanted))


def media_images(shutter, account, media_id: str) -> dict:
    response = shutter.get(f"/v1/media/{media_id}", account)
    assert response.status_code == 200, response.json
    return response.json["data"]["images"]


def own_feed_images(shutter, account) -> dict:
    response = shutter.get("/v1/users/self/feed", account)
    assert response.status_code == 200, response.json
    return response.json["data"][0]["images"]


def make_pre_token(services, pid: int) -> dict[str, bytes]:
    """Turn a processed photo into one processed before 0002; returns its old keys' bytes."""
    storage = services.storage
    with services.db.session() as session:
        photo = session.get(Photo, pid)
        old, data = {}, {}
        for name, derivative in photo.derivatives.items():
            key = f"photos/{pid}/{name}.jpg"
            data[key] = storage.get(derivative["key"])
            storage.put(key, data[key], "image/jpeg")
            storage.delete([derivative["key"]])
            old[name] = {**derivative, "key": key}
        session.execute(update(Photo).where(Photo.id == pid).values(derivative_token=None, derivatives=old))
        session.commit()
    return data


def sweep(services, **kwargs) -> int:
    """What the sweep task does for tokens (tasks/maintenance.py)."""
    with services.db.session() as session:
        return rekey.rekey_batch(session, services.storage, celery=services.celery, **kwargs)


@pytest.fixture
def old_photo(shutter):
    """A private account's photo processed before tokens, its URLs already in the cache
    and the rendered feed."""
    alice = shutter.account("alice", private=True)
    pid = post_photo(shutter, alice, fan_out=False)
    services = services_of(shutter)
    old = make_pre_token(services, pid)
    media_id = shutter.get("/v1/users/self/media/recent", alice).json["data"][0]["id"]
    # Read twice: the second read is served warm (cache, rendered feed) with the old keys.
    for _ in range(2):
        assert urls_name(services, media_images(shutter, alice, media_id), old)
        assert urls_name(services, own_feed_images(shutter, alice), old)
    return alice, pid, media_id, old


# --- the sweep moves them --------------------------------------------------


def test_the_sweep_moves_a_pre_token_photo_under_a_token(shutter, old_photo):
    alice, pid, media_id, old = old_photo
    services = services_of(shutter)
    assert sweep(services) == 1

    row = photo_row(shutter.client.application, media_id)
    token = row.derivative_token
    assert token and len(token) >= 32
    new = {f"photos/{pid}/{token}/{name}.jpg" for name in IMAGE_NAMES}
    assert {d["key"] for d in row.derivatives.values()} == new
    # The API's URLs (cached and rendered ones included) carry the token ...
    for images in (media_images(shutter, alice, media_id), own_feed_images(shutter, alice)):
        assert set(images) == IMAGE_NAMES
        for name, image in images.items():
            assert image["url"].endswith(services.storage.url(f"photos/{pid}/{token}/{name}.jpg")), image["url"]
    # ... the new keys hold the same bytes, and the old ones are gone and not served.
    for name in IMAGE_NAMES:
        assert fetch(shutter, services, f"photos/{pid}/{token}/{name}.jpg") == (200, old[f"photos/{pid}/{name}.jpg"])
    for key in old:
        assert fetch(shutter, services, key)[0] == 404
        assert not services.storage.exists(key)
    assert stored_keys(services) == {row.original_key, *new}

    # Again: nothing to do, nothing changes.
    assert sweep(services) == 0
    again = photo_row(shutter.client.application, media_id)
    assert (again.derivative_token, again.derivatives) == (token, row.derivatives)
    assert stored_keys(services) == {row.original_key, *new}


def test_the_sweep_moves_a_bounded_batch_oldest_first(shutter):
    alice = shutter.account("alice")
    services = services_of(shutter)
    pids = [post_photo(shutter, alice, fan_out=False) for _ in range(3)]
    for pid in pids:
        make_pre_token(services, pid)
    assert sweep(services, batch=2) == 2
    with services.db.session() as session:
        tokens = [session.get(Photo, pid).derivative_token for pid in pids]
    assert tokens[0] and tokens[1] and tokens[2] is None
    assert sweep(services, batch=2) == 1
    assert sweep(services, batch=2) == 0


def test_a_photo_still_processing_and_one_with_a_token_are_left_alone(shutter):
    alice = shutter.account("alice")
    services = services_of(shutter)
    pid = post_photo(shutter, alice, fan_out=False)
    before = stored_keys(services)
    assert sweep(services) == 0
    assert stored_keys(services) == before
    # A processing row without a token: its worker writes where its snapshot says.
    make_pre_token(services, pid)
    with services.db.session() as session:
        session.execute(update(Photo).where(Photo.id == pid).values(status="processing"))
        session.commit()
    assert sweep(services) == 0
    assert photo_row(shutter.client.application, f"{pid}_1").derivative_token is None


# --- two at once ---------------------------------------------------------------


def test_two_rekeys_racing_leave_one_token_and_no_stray_files(shutter, old_photo):
    """The second run copies and claims while the first has copied and is about to claim:
    one token wins, the loser removes its own copies, the old keys go."""
    alice, pid, media_id, old = old_photo
    services = services_of(shutter)
    first, second = services.db.session(), services.db.session()
    raced = []

    def the_other_run_first(state):
        # The first run's claim is about to execute: the other run does it all now.
        if state.is_update and not raced:
            raced.append(rekey.rekey_photo(second, services.storage, pid, services.celery))

    event.listen(first, "do_orm_execute", the_other_run_first)
    try:
        assert not rekey.rekey_photo(first, services.storage, pid, services.celery)
    finally:
        event.remove(first, "do_orm_execute", the_other_run_first)
        first.close()
        second.close()
    assert raced == [True]

    row = photo_row(shutter.client.application, media_id)
    new = {f"photos/{pid}/{row.derivative_token}/{name}.jpg" for name in IMAGE_NAMES}
    assert row.derivative_token and {d["key"] for d in row.derivatives.values()} == new
    assert stored_keys(services) == {row.original_key, *new}  # no loser's copies, no old keys
    for name, image in media_images(shutter, alice, media_id).items():
        assert image["url"].endswith(services.storage.url(f"photos/{pid}/{row.derivative_token}/{name}.jpg"))


def test_a_rekey_racing_a_delete_leaves_no_files(shutter, old_photo):
    alice, pid, media_id, old = old_photo
    services = services_of(shutter)
    session: Session = services.db.session()
    deleted = []

    def delete_first(state):
        # The re-key's claim is about to execute: the photo is deleted first.
        if state.is_update and not deleted:
            deleted.append(shutter.delete(f"/v1/media/{media_id}", alice).status_code)

    event.listen(session, "do_orm_execute", delete_first)
    try:
        assert not rekey.rekey_photo(session, services.storage, pid, services.celery)
    finally:
        event.remove(session, "do_orm_execute", delete_first)
        session.close()
    assert deleted == [200]
    assert photo_row(shutter.client.application, media_id) is None
    assert stored_keys(services) == set()


# --- the sweep task, on a real worker --------------------------------------------


def test_the_sweep_task_on_a_worker_moves_them_and_logs_how_many(app, settings, worker_process):
    local = Shutter(app.test_client())
    alice = local.account("alice", private=True)
    services = services_of(local)
    pids = [post_photo(local, alice, fan_out=False) for _ in range(2)]
    for pid in pids:
        make_pre_token(services, pid)
    worker = worker_process(settings).start()
    services.celery.send_task("tasks.maintenance.sweep")
    worker.wait_for_log("sweep moved 2 photos under a derivative token")
    with services.db.session() as session:
        rows = [session.get(Photo, pid) for pid in pids]
    assert all(row.derivative_token for row in rows)
    assert stored_keys(services) == {
        key for row in rows for key in (row.original_key, *(d["key"] for d in row.derivatives.values()))}
