"""Issue 11, items 1, 2, 3 and 9: what /media serves, unguessable image keys,
nosniff, and deletes that act on the row rather than a snapshot; both stacks.

The path tricks are sent RAW through http.client to a real HTTP server
(werkzeug's, in a thread): requests and urllib3 resolve dot segments before
sending, and Flask's test client does not go through an HTTP parser.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import threading

import pytest
from PIL import ExifTags
from sqlalchemy import select, update
from werkzeug.serving import make_server

from app.media import pipeline
from models import Photo, Tag, User
from tests import images
from tests.support import Shutter, assert_error
from tests.test_media_api import IMAGE_NAMES as DERIVATIVE_NAMES
from tests.test_media_api import media_count, photo_id, photo_row, process, uploaded

NOSNIFF = ("X-Content-Type-Options", "nosniff")


# --- helpers ---------------------------------------------------------------


@pytest.fixture
def http_server(app):
    """The app behind a real HTTP server on 127.0.0.1; yields its port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(5)


def raw_get(port: int, path: str) -> tuple[int, dict, bytes]:
    """GET `path` exactly as written: no dot-segment resolution, no re-quoting."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", f"127.0.0.1:{port}")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def media_files(app) -> set[str]:
    """Every file under the local media folder, as storage keys."""
    root = app.extensions["shutter"].settings.media_root
    found = set()
    for directory, _dirs, files in os.walk(root):
        for name in files:
            found.add(os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/"))
    return found


def ready_photo(app, shutter, account, **fields) -> dict:
    media = uploaded(shutter, account, images.jpeg(1200, 900), **fields)  # with GPS EXIF (tests/images.py)
    process(app, media["id"])
    return shutter.get(f"/v1/media/{media['id']}", account).json["data"]


# --- item 1: originals are never served ------------------------------------


def test_path_tricks_never_serve_the_original(app, shutter, http_server):
    alice = shutter.account("alice")
    media = ready_photo(app, shutter, alice)
    row = photo_row(app, media["id"])
    pid = photo_id(media["id"])
    root = app.extensions["shutter"].settings.media_root
    with open(os.path.join(root, *row.original_key.split("/")), "rb") as f:
        original = f.read()
    # The file that must never go out: it keeps the uploader's position (and camera).
    assert images.Image.open(io.BytesIO(original)).getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert images.MAKE.encode() in original
    name = f"{pid}.jpg"
    derivative = row.derivatives["thumbnail"]["key"]  # photos/<id>/<token>/thumbnail.jpg

    tricks = [
        f"/media/originals/{name}",
        f"/media/%2e/originals/{name}",
        f"/media/%2E/originals/{name}",
        f"/media/./originals/{name}",
        f"/media/photos/../originals/{name}",
        f"/media/photos/%2e%2e/originals/{name}",
        f"/media/photos/%2E%2E/originals/{name}",
        f"/media/%2e/photos/../originals/{name}",
        f"/media/photos/{pid}/../../originals/{name}",
        f"/media/{derivative.rsplit('/', 1)[0]}/../../../originals/{name}",
        f"/media//originals/{name}",
        f"/media/photos//../originals/{name}",
        f"/media/photos/%2e%2e%2foriginals/{name}",
        f"/media/photos%2f..%2foriginals/{name}",
        f"/media/photos%5c..%5coriginals%5c{name}",
        f"/media/ORIGINALS/{name}",
        f"/media/Originals/{name}",
        f"/media/originals/{name}/",
        f"/media/originals/{name}%00",
        f"/media/%2e/originals/{name}/",
        f"/media/{derivative}/",  # a trailing slash is not the served file either
        f"/media/./{derivative}",
    ]
    for path in tricks:
        status, headers, body = raw_get(http_server, path)
        assert status == 404, (path, status)
        assert body != original and images.MAKE.encode() not in body, path
        assert headers.get("Content-Type") == "application/json", (path, headers)
        assert json.loads(body)["meta"]["code"] == 404, path

    # The derivative itself is served, as a JPEG without metadata.
    status, headers, body = raw_get(http_server, f"/media/{derivative}")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    images.assert_no_metadata(body)


# --- item 2: a media id does not give away its image URLs --------------------


def test_derivative_urls_carry_an_unguessable_token(app, shutter, http_server):
    alice = shutter.account("alice", private=True)
    first = ready_photo(app, shutter, alice)
    second = ready_photo(app, shutter, alice)
    tokens = []
    for media in (first, second):
        pid = photo_id(media["id"])
        token = getattr(photo_row(app, media["id"]), "derivative_token", None)
        assert token and len(token) >= 32 and str(pid) not in token
        tokens.append(token)
        assert set(media["images"]) == set(DERIVATIVE_NAMES)
        for name, image in media["images"].items():
            assert image["url"].endswith(f"/media/photos/{pid}/{token}/{name}.jpg"), image["url"]
            # The old guessable key holds nothing and serves nothing.
            guessable = f"photos/{pid}/{name}.jpg"
            assert guessable not in media_files(app)
            assert raw_get(http_server, f"/media/{guessable}")[0] == 404
            assert raw_get(http_server, f"/media/photos/{pid}/{token}/{name}.jpg")[0] == 200
    assert tokens[0] != tokens[1]


def test_processing_again_reuses_the_stored_token(app, shutter):
    """Idempotent processing: the keys come from the id and the stored token."""
    alice = shutter.account("alice")
    media = uploaded(shutter, alice, images.jpeg(800, 600))
    services = app.extensions["shutter"]
    token = getattr(photo_row(app, media["id"]), "derivative_token", None)
    assert token  # given at upload
    with services.db.session() as session:
        assert pipeline.process_photo(session, services.storage, photo_id(media["id"]))
        # A duplicate delivery of the same work, as if the first UPDATE had been lost.
        session.execute(update(Photo).where(Photo.id == photo_id(media["id"])).values(derivatives=None))
        session.commit()
        assert pipeline.process_photo(session, services.storage, photo_id(media["id"]))
    row = photo_row(app, media["id"])
    assert row.derivative_token == token
    pid = photo_id(media["id"])
    assert {d["key"] for d in row.derivatives.values()} == {
        f"photos/{pid}/{token}/{name}.jpg" for name in DERIVATIVE_NAMES}
    assert media_files(app) == {row.original_key, *(d["key"] for d in row.derivatives.values())}


def test_rows_from_before_tokens_keep_their_keys(app, shutter):
    """A row without a token (processed before migration 0002) serves and deletes its stored keys."""
    alice = shutter.account("alice")
    media = uploaded(shutter, alice, images.jpeg(800, 600))
    services = app.extensions["shutter"]
    with services.db.session() as session:
        session.execute(update(Photo).where(Photo.id == photo_id(media["id"])).values(derivative_token=None))
        session.commit()
    process(app, media["id"])
    pid = photo_id(media["id"])
    ready = shutter.get(f"/v1/media/{media['id']}", alice).json["data"]
    for name, image in ready["images"].items():
        assert image["url"].endswith(f"/media/photos/{pid}/{name}.jpg")
        assert shutter.client.get(f"/media/photos/{pid}/{name}.jpg").status_code == 200
    assert shutter.delete(f"/v1/media/{media['id']}", alice).status_code == 200
    assert media_files(app) == set()


# --- item 3: nosniff, and images only -------------------------------------


def test_every_response_says_nosniff(app, shutter):
    alice = shutter.account("alice")
    media = ready_photo(app, shutter, alice)
    responses = {
        "api": shutter.get("/v1/users/self", alice),
        "api error": shutter.get("/v1/users/self"),
        "not found": shutter.client.get("/v1/nothing-here"),
        "docs": shutter.client.get("/docs"),
        "healthz": shutter.client.get("/healthz"),
        "metrics": shutter.client.get("/metrics"),
        "media": shutter.client.get(media["images"]["thumbnail"]["url"].split("localhost", 1)[1]),
        "media 404": shutter.client.get("/media/originals/1.jpg"),
    }
    assert responses["api"].status_code == 200 and responses["media"].status_code == 200
    assert responses["api error"].status_code == 400 and responses["not found"].status_code == 404
    for what, response in responses.items():
        assert response.headers.get(NOSNIFF[0]) == NOSNIFF[1], what
    assert responses["media"].headers["Content-Type"] == "image/jpeg"


def test_media_serves_images_only(app, shutter):
    """A file under a served folder whose name is not an image is not served (no HTML, no SVG)."""
    root = app.extensions["shutter"].settings.media_root
    planted = {
        "photos/1/evil.html": b"<script>alert(1)</script>",
        "photos/1/evil.svg": b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        "profiles/1/evil": b"<script>alert(1)</script>",
        "profiles/1/evil.jpg.html": b"<script>alert(1)</script>",
        "photos/1/fine.jpg": images.jpeg(40, 30, exif=images.Image.Exif(), xmp=None),
    }
    for key, data in planted.items():
        path = os.path.join(root, *key.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    for key in planted:
        response = shutter.client.get(f"/media/{key}")
        if key.endswith(".jpg"):
            assert response.status_code == 200 and response.headers["Content-Type"] == "image/jpeg"
        else:
            assert_error(response, 404, "APINotFoundError")
            assert b"script" not in response.data


# --- item 9: deletes act on the row, not on a snapshot ----------------------


def _counts(app, user_id: str, tag: str) -> tuple[int, int]:
    with app.extensions["shutter"].db.session() as session:
        media = session.scalar(select(User.media_count).where(User.id == int(user_id)))
        tagged = session.scalar(select(Tag.media_count).where(Tag.name == tag))
        return media, tagged


def test_two_deletes_from_stale_snapshots_count_once(app, shutter):
    alice = shutter.account("alice")
    keep = ready_photo(app, shutter, alice, caption="#sunset one")
    media = ready_photo(app, shutter, alice, caption="#sunset two")
    assert _counts(app, alice.id, "sunset") == (2, 2)
    services = app.extensions["shutter"]
    pid = photo_id(media["id"])
    first, second = services.db.session(), services.db.session()
    try:
        # Each loads the photo, as two concurrent or retried DELETE requests do.
        snapshots = []
        for session in (first, second):
            snapshots.append(session.get(Photo, pid))
            session.commit()
        assert all(s.status == "ready" for s in snapshots)
        assert pipeline.delete_photo(first, services.storage, snapshots[0], services.celery)
        assert not pipeline.delete_photo(second, services.storage, snapshots[1], services.celery)
    finally:
        first.close()
        second.close()
    assert _counts(app, alice.id, "sunset") == (1, 1)
    assert media_count(shutter, alice) == 1
    assert photo_row(app, media["id"]) is None and photo_row(app, keep["id"]) is not None
    # Through the API, a second delete of the gone photo answers 404 as before.
    assert_error(shutter.delete(f"/v1/media/{media['id']}", alice), 404, "APINotFoundError")
    assert _counts(app, alice.id, "sunset") == (1, 1)


def test_delete_with_a_snapshot_from_before_processing_removes_every_file(app, shutter):
    alice = shutter.account("alice")
    media = uploaded(shutter, alice, images.jpeg(800, 600))
    services = app.extensions["shutter"]
    pid = photo_id(media["id"])
    stale = services.db.session()
    try:
        snapshot = stale.get(Photo, pid)
        stale.commit()
        assert snapshot.status == "processing" and not snapshot.derivatives
        with services.db.session() as worker:  # the media queue finishes meanwhile
            assert pipeline.process_photo(worker, services.storage, pid)
        assert len(media_files(app)) == 1 + len(DERIVATIVE_NAMES)
        assert pipeline.delete_photo(stale, services.storage, snapshot, services.celery)
    finally:
        stale.close()
    assert photo_row(app, media["id"]) is None
    assert media_files(app) == set()
    assert media_count(shutter, alice) == 0


@pytest.fixture
def s3_app(make_app, s3_storage, moto_s3_url):
    return make_app(storage_backend="s3", s3_bucket=s3_storage.bucket, s3_prefix="media",
                    s3_endpoint_url=moto_s3_url)


def test_s3_delete_with_a_stale_snapshot_empties_the_bucket(s3_app, s3_storage):
    shutter = Shutter(s3_app.test_client())
    alice = shutter.account("alice")
    media = uploaded(shutter, alice, images.jpeg(800, 600))
    services = s3_app.extensions["shutter"]
    pid = photo_id(media["id"])
    stale = services.db.session()
    try:
        snapshot = stale.get(Photo, pid)
        stale.commit()
        process(s3_app, media["id"])
        assert s3_storage.client.list_objects_v2(Bucket=s3_storage.bucket)["KeyCount"] == 5
        assert pipeline.delete_photo(stale, services.storage, snapshot, services.celery)
    finally:
        stale.close()
    assert s3_storage.client.list_objects_v2(Bucket=s3_storage.bucket)["KeyCount"] == 0
    assert media_count(shutter, alice) == 0
