"""The upload pipeline through the API (issue 3), on both stacks.

Processing is run by calling the pipeline service functions directly, with
the app's own services: no worker is needed here (tests/test_pipeline_faults.py
runs real workers). Every image is made by the tests (tests/images.py).
"""
from __future__ import annotations

import io
import os
import threading
from urllib.parse import urlsplit

import pytest
from PIL import Image
from sqlalchemy import func, select

from app.media import pipeline
from models import Outbox, Photo
from tests import images
from tests.support import Shutter, assert_error

IMAGE_NAMES = {"thumbnail", "low_resolution", "standard_resolution", "high_resolution"}


# --- helpers ---------------------------------------------------------------


def upload(shutter: Shutter, account, data: bytes, filename: str = "photo.jpg", headers=None, **fields):
    return shutter.post("/v1/media/upload", account, files={"photo": (io.BytesIO(data), filename)},
                        headers=headers, **fields)


def uploaded(shutter: Shutter, account, data: bytes, filename: str = "photo.jpg", **fields) -> dict:
    response = upload(shutter, account, data, filename, **fields)
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.json["meta"]["code"] == 202
    return response.json["data"]


def photo_id(media_id: str) -> int:
    return int(media_id.split("_")[0])


def process(app, media_id: str) -> None:
    """What the media queue does for a photo: derivatives, then `ready`."""
    services = app.extensions["shutter"]
    with services.db.session() as session:
        assert pipeline.process_photo(session, services.storage, photo_id(media_id))
        assert pipeline.publish_photo(session, services.celery, photo_id(media_id))


def photo_row(app, media_id: str) -> Photo | None:
    with app.extensions["shutter"].db.session() as session:
        return session.get(Photo, photo_id(media_id))


def served(client, url: str) -> bytes:
    """Fetch a served image through the app's /media route (local storage)."""
    parts = urlsplit(url)
    assert parts.path.startswith("/media/"), url
    response = client.get(parts.path)
    assert response.status_code == 200, url
    return response.data


def stored_keys(photo: Photo) -> list[str]:
    return [photo.original_key, *(d["key"] for d in photo.derivatives.values())]


def media_count(shutter: Shutter, account) -> int:
    response = shutter.get("/v1/users/self", account)
    assert response.status_code == 200, response.json
    return response.json["data"]["counts"]["media"]


# --- upload: every accepted format ---------------------------------------

FORMATS = {
    "jpeg": ("JPEG", "photo.jpg", "image/jpeg"),
    "png": ("PNG", "photo.png", "image/png"),
    "webp": ("WEBP", "photo.webp", "image/webp"),
    "heic": ("HEIF", "photo.heic", "image/heic"),
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_upload_process_and_serve_every_format(app, client, shutter, fmt):
    pil_format, filename, content_type = FORMATS[fmt]
    alice = shutter.account("alice")
    data = images.encode(images.picture(1600, 1200), pil_format)

    media = uploaded(shutter, alice, data, filename, caption="first light", filter="Valencia")
    # The v1 media shape, still processing.
    assert media["type"] == "image"
    assert media["status"] == "processing"
    assert media["id"] == f"{photo_id(media['id'])}_{alice.id}"
    assert media["user"]["id"] == alice.id and media["user"]["username"] == "alice"
    assert media["shortcode"] and media["link"].endswith(f"/p/{media['shortcode']}/")
    assert media["created_time"].isdigit()
    assert media["images"] == {}
    assert media["blurhash"] is None
    assert media["caption"]["text"] == "first light" and media["filter"] == "Valencia"
    row = photo_row(app, media["id"])
    assert row.original_content_type == content_type
    assert row.original_key.startswith("originals/")
    assert media_count(shutter, alice) == 0  # counted once it is ready

    process(app, media["id"])

    response = shutter.get(f"/v1/media/{media['id']}", alice)
    assert response.status_code == 200, response.json
    ready = response.json["data"]
    assert ready["status"] == "ready" and ready["id"] == media["id"]
    assert ready["blurhash"] and 20 <= len(ready["blurhash"]) <= 40
    sizes = {name: (image["width"], image["height"]) for name, image in ready["images"].items()}
    assert sizes == {"thumbnail": (150, 150), "low_resolution": (320, 240),
                     "standard_resolution": (640, 480), "high_resolution": (1080, 810)}
    for name, image in ready["images"].items():
        img = images.assert_no_metadata(served(client, image["url"]))
        assert img.size == (image["width"], image["height"]), name
    assert media_count(shutter, alice) == 1
    # Originals keep their EXIF and GPS: never served.
    assert client.get(f"/media/{row.original_key}").status_code == 404


def test_small_source_is_not_upscaled(app, client, shutter):
    alice = shutter.account("alice")
    media = uploaded(shutter, alice, images.jpeg(200, 100))
    process(app, media["id"])
    ready = shutter.get(f"/v1/media/{media['id']}", alice).json["data"]
    sizes = {name: (image["width"], image["height"]) for name, image in ready["images"].items()}
    assert sizes == {"thumbnail": (100, 100), "low_resolution": (200, 100),
                     "standard_resolution": (200, 100), "high_resolution": (200, 100)}
    for image in ready["images"].values():
        assert Image.open(io.BytesIO(served(client, image["url"]))).size == (image["width"], image["height"])


def test_no_exif_gps_or_camera_data_in_served_files(app, client, shutter):
    alice = shutter.account("alice")
    data = images.jpeg(1200, 900)
    assert images.MAKE.encode() in data and b"Exif" in data and images.XMP_MARKER.encode() in data
    media = uploaded(shutter, alice, data, lat="48.8583", lng="2.2945", location_name="Tour Eiffel")
    process(app, media["id"])
    ready = shutter.get(f"/v1/media/{media['id']}", alice).json["data"]
    assert set(ready["images"]) == IMAGE_NAMES
    for image in ready["images"].values():
        images.assert_no_metadata(served(client, image["url"]))
    # The location the user chose to share is the API's, not the file's.
    assert ready["location"]["name"] == "Tour Eiffel"


def test_orientation_6_comes_out_upright(app, client, shutter):
    alice = shutter.account("alice")
    media = uploaded(shutter, alice, images.sideways_jpeg(600, 1000))
    process(app, media["id"])
    ready = shutter.get(f"/v1/media/{media['id']}", alice).json["data"]
    high = ready["images"]["high_resolution"]
    assert (high["width"], high["height"]) == (600, 1000)  # portrait, not upscaled
    assert (ready["images"]["standard_resolution"]["width"],
            ready["images"]["standard_resolution"]["height"]) == (600, 1000)
    assert (ready["images"]["low_resolution"]["width"], ready["images"]["low_resolution"]["height"]) == (320, 533)
    for name in ("high_resolution", "low_resolution"):
        img = Image.open(io.BytesIO(served(client, ready["images"][name]["url"]))).convert("RGB")
        assert img.height > img.width, name
        top = img.getpixel((img.width // 2, img.height // 20))
        bottom = img.getpixel((img.width // 2, img.height * 19 // 20))
        left = img.getpixel((img.width // 20, img.height // 2))
        assert top[0] > 180 and top[2] < 80, (name, top)  # the red band is at the top
        assert bottom[2] > 180 and bottom[0] < 80, (name, bottom)
        assert left[2] > 180 and left[0] < 80, (name, left)
    row = photo_row(app, media["id"])
    assert (row.width, row.height) == (600, 1000)


# --- bad files refused -----------------------------------------------------


@pytest.mark.parametrize("case", ["text", "empty", "truncated_jpeg", "gif", "bomb", "corrupt_png"])
def test_bad_files_are_refused(app, shutter, case):
    alice = shutter.account("alice")
    good = images.jpeg(800, 600)
    data, code, error_type = {
        "text": (b"hello, this is not a photo\n" * 10, 415, "APIUnsupportedMediaType"),
        "empty": (b"", 400, "APIInvalidImage"),
        "truncated_jpeg": (good[: len(good) // 2], 400, "APIInvalidImage"),
        "gif": (images.gif(), 415, "APIUnsupportedMediaType"),
        "bomb": (images.png_bomb_header(), 400, "APIImageTooLarge"),
        "corrupt_png": (images.encode(images.picture(300, 200), "PNG")[:-40], 400, "APIInvalidImage"),
    }[case]
    assert_error(upload(shutter, alice, data), code, error_type)
    with app.extensions["shutter"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(Photo)) == 0
        assert session.scalar(select(func.count()).select_from(Outbox)) == 0


def test_bad_upload_requests_are_refused(shutter):
    alice = shutter.account("alice")
    good = images.jpeg(400, 300)
    # No `photo` file at all.
    assert_error(shutter.post("/v1/media/upload", alice, caption="hi"), 400, "APIInvalidParametersError")
    assert_error(upload(shutter, alice, good, lat="48.85"), 400, "APIInvalidParametersError")
    assert_error(upload(shutter, alice, good, lat="91", lng="2"), 400, "APIInvalidParametersError")
    assert_error(upload(shutter, alice, good, location_name="Nowhere"), 400, "APIInvalidParametersError")
    assert_error(upload(shutter, alice, good, share_to="twitter,myspace"), 400, "APIInvalidParametersError")
    assert_error(upload(shutter, alice, good, headers={"Idempotency-Key": "k" * 101}),
                 400, "APIInvalidParametersError")
    assert_error(upload(shutter, alice, good, headers={"Idempotency-Key": ""}), 400, "APIInvalidParametersError")
    # No token.
    assert_error(upload(shutter, None, good), 400, "OAuthParameterException")
    # share_to that is valid is kept.
    media = uploaded(shutter, alice, good, share_to="Twitter, facebook")
    assert media["status"] == "processing"


def test_upload_over_max_content_length_is_413(make_app):
    shutter = Shutter(make_app(max_upload_bytes=100_000).test_client())
    alice = shutter.account("alice")
    big = images.encode(images.picture(1500, 1500).effect_spread(50), "PNG")
    assert len(big) > 100_000
    assert_error(upload(shutter, alice, big, "big.png"), 413, "APIRequestTooLargeError")
    assert upload(shutter, alice, images.jpeg(300, 200)).status_code == 202


# --- idempotency -------------------------------------------------------------


def test_same_idempotency_key_gives_the_same_media(app, shutter):
    alice = shutter.account("alice")
    bob = shutter.account("bob")
    data = images.jpeg(800, 600)
    key = {"Idempotency-Key": "upload-42"}
    first = uploaded(shutter, alice, data, headers=key)
    again = uploaded(shutter, alice, data, headers=key)
    assert again["id"] == first["id"]
    # Another user may use the same key: a different photo.
    bobs = uploaded(shutter, bob, data, headers=key)
    assert bobs["id"] != first["id"]
    # No key: always a new photo.
    assert uploaded(shutter, alice, data)["id"] != first["id"]
    with app.extensions["shutter"].db.session() as session:
        assert session.scalar(select(func.count()).select_from(Photo).where(Photo.idempotency_key == "upload-42")) == 2
        assert session.scalar(select(func.count()).select_from(Outbox)) == 3
    # A retry after processing returns the ready photo.
    process(app, first["id"])
    assert uploaded(shutter, alice, data, headers=key)["status"] == "ready"


def test_concurrent_retries_with_the_same_key_make_one_photo(app, shutter):
    alice = shutter.account("alice")
    data = images.jpeg(1200, 900)
    barrier = threading.Barrier(4)
    results: list = []

    def retry():
        own = Shutter(app.test_client())  # a test client per thread
        barrier.wait()
        response = upload(own, alice, data, headers={"Idempotency-Key": "same-one"})
        results.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=retry) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
    assert {code for code, _ in results} == {202}, results
    assert len({body["data"]["id"] for _, body in results}) == 1
    services = app.extensions["shutter"]
    with services.db.session() as session:
        photos = session.scalars(select(Photo)).all()
        assert len(photos) == 1
        assert session.scalar(select(func.count()).select_from(Outbox)) == 1
    # The losers' originals were removed: only the winner's remains.
    assert services.storage.exists(photos[0].original_key)
    originals = os.listdir(os.path.join(services.settings.media_root, pipeline.ORIGINALS))
    assert originals == [photos[0].original_key.split("/")[-1]]


# --- reading ---------------------------------------------------------------


def test_get_by_id_and_shortcode(app, shutter):
    alice = shutter.account("alice")
    bob = shutter.account("bob")
    media = uploaded(shutter, alice, images.jpeg(400, 300))
    # The owner sees it while processing; others don't, yet.
    assert shutter.get(f"/v1/media/{media['id']}", alice).json["data"]["status"] == "processing"
    assert_error(shutter.get(f"/v1/media/{media['id']}", bob), 404, "APINotFoundError")
    assert_error(shutter.get(f"/v1/media/shortcode/{media['shortcode']}", bob), 404, "APINotFoundError")
    process(app, media["id"])
    by_id = shutter.get(f"/v1/media/{media['id']}", bob)
    assert by_id.status_code == 200 and by_id.json["data"]["status"] == "ready"
    # The photo id alone works too.
    assert shutter.get(f"/v1/media/{photo_id(media['id'])}", bob).json["data"]["id"] == media["id"]
    by_code = shutter.get(f"/v1/media/shortcode/{media['shortcode']}", bob)
    assert by_code.status_code == 200 and by_code.json["data"]["id"] == media["id"]
    # Bad and unknown ids.
    assert_error(shutter.get("/v1/media/not-a-number", bob), 400, "APIInvalidParametersError")
    assert_error(shutter.get(f"/v1/media/{1 << 64}", bob), 400, "APIInvalidParametersError")
    assert_error(shutter.get(f"/v1/media/{photo_id(media['id']) + 1}_{alice.id}", bob), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/media/shortcode/!!!", bob), 404, "APINotFoundError")
    assert_error(shutter.get("/v1/media/shortcode/zzzzzzzzzz", bob), 404, "APINotFoundError")
    assert_error(shutter.get(f"/v1/media/{media['id']}"), 400, "OAuthParameterException")


def test_a_shortcode_past_the_largest_id_is_404(shutter):
    # Found by test_fuzz.py: 8 bytes with the top bit set decoded to an id over 2**63 - 1,
    # which the database cannot take (OverflowError on SQLite: a 500).
    bob = shutter.account("bob")
    for code in ["gAAAAAAAAAA", "__________8"]:
        assert_error(shutter.get(f"/v1/media/shortcode/{code}", bob), 404, "APINotFoundError")


def test_private_owner_photo_hidden_from_non_followers(app, shutter):
    alice = shutter.account("alice", private=True)
    bob = shutter.account("bob")
    media = uploaded(shutter, alice, images.jpeg(400, 300))
    process(app, media["id"])
    assert shutter.get(f"/v1/media/{media['id']}", alice).status_code == 200
    assert_error(shutter.get(f"/v1/media/{media['id']}", bob), 400, "APINotAllowedError")
    assert_error(shutter.get(f"/v1/media/shortcode/{media['shortcode']}", bob), 400, "APINotAllowedError")
    # A requested (not yet approved) follow doesn't open it; approval does.
    assert shutter.relate(bob, alice, "follow").status_code == 200
    assert_error(shutter.get(f"/v1/media/{media['id']}", bob), 400, "APINotAllowedError")
    assert shutter.relate(alice, bob, "approve").status_code == 200
    assert shutter.get(f"/v1/media/{media['id']}", bob).status_code == 200


# --- delete ----------------------------------------------------------------


def test_delete_removes_row_and_every_file(app, client, shutter):
    alice = shutter.account("alice")
    bob = shutter.account("bob")
    storage = app.extensions["shutter"].storage
    media = uploaded(shutter, alice, images.jpeg(1600, 1200))
    process(app, media["id"])
    row = photo_row(app, media["id"])
    keys = stored_keys(row)
    assert len(keys) == 5 and all(storage.exists(key) for key in keys)
    assert media_count(shutter, alice) == 1
    urls = [image["url"] for image in shutter.get(f"/v1/media/{media['id']}", alice).json["data"]["images"].values()]

    assert_error(shutter.delete(f"/v1/media/{media['id']}", bob), 403, "APINotAllowedError")
    assert photo_row(app, media["id"]) is not None
    assert_error(shutter.delete(f"/v1/media/{photo_id(media['id']) + 1}", alice), 404, "APINotFoundError")
    assert_error(shutter.delete("/v1/media/nope", alice), 400, "APIInvalidParametersError")

    response = shutter.delete(f"/v1/media/{media['id']}", alice)
    assert response.status_code == 200, response.json
    assert response.json == {"meta": {"code": 200}, "data": None}
    assert photo_row(app, media["id"]) is None
    assert not any(storage.exists(key) for key in keys)
    assert all(client.get(urlsplit(url).path).status_code == 404 for url in urls)
    assert media_count(shutter, alice) == 0
    assert_error(shutter.get(f"/v1/media/{media['id']}", alice), 404, "APINotFoundError")
    assert_error(shutter.delete(f"/v1/media/{media['id']}", alice), 404, "APINotFoundError")
    # Processing the deleted photo (a late duplicate delivery) does nothing.
    services = app.extensions["shutter"]
    with services.db.session() as session:
        assert not pipeline.process_photo(session, services.storage, photo_id(media["id"]))


def test_delete_while_processing(app, shutter):
    alice = shutter.account("alice")
    storage = app.extensions["shutter"].storage
    media = uploaded(shutter, alice, images.jpeg(800, 600))
    original = photo_row(app, media["id"]).original_key
    assert storage.exists(original)
    assert shutter.delete(f"/v1/media/{media['id']}", alice).status_code == 200
    assert not storage.exists(original)
    assert media_count(shutter, alice) == 0
    services = app.extensions["shutter"]
    with services.db.session() as session:
        assert not pipeline.process_photo(session, services.storage, photo_id(media["id"]))
        assert not pipeline.publish_photo(session, services.celery, photo_id(media["id"]))
    assert media_count(shutter, alice) == 0


def test_processing_twice_is_harmless(app, shutter):
    alice = shutter.account("alice")
    media = uploaded(shutter, alice, images.jpeg(800, 600))
    process(app, media["id"])
    services = app.extensions["shutter"]
    with services.db.session() as session:
        assert not pipeline.process_photo(session, services.storage, photo_id(media["id"]))
        assert not pipeline.publish_photo(session, services.celery, photo_id(media["id"]))
    assert media_count(shutter, alice) == 1


# --- the S3 backend (moto) -----------------------------------------------------


CDN = "https://cdn.shutter.test"


@pytest.fixture(params=["s3", "s3+cdn"])
def s3_app(request, make_app, s3_storage, moto_s3_url):
    cdn = CDN if request.param == "s3+cdn" else ""
    return make_app(storage_backend="s3", s3_bucket=s3_storage.bucket, s3_prefix="media",
                    s3_endpoint_url=moto_s3_url, cdn_url=cdn)


def test_s3_upload_serve_and_delete(s3_app, s3_storage, moto_s3_url):
    shutter = Shutter(s3_app.test_client())
    alice = shutter.account("alice")
    media = uploaded(shutter, alice, images.jpeg(1600, 1200), "photo.jpg")
    row = photo_row(s3_app, media["id"])
    assert s3_storage.exists(row.original_key)  # the same bucket, seen from the test
    process(s3_app, media["id"])
    ready = shutter.get(f"/v1/media/{media['id']}", alice).json["data"]
    assert ready["status"] == "ready" and set(ready["images"]) == IMAGE_NAMES
    row = photo_row(s3_app, media["id"])
    cdn = s3_app.extensions["shutter"].settings.cdn_url
    for name, image in ready["images"].items():
        key = row.derivatives[name]["key"]
        if cdn:
            assert image["url"] == f"{CDN}/media/{key}"
        else:
            assert image["url"] == f"{moto_s3_url}/{s3_storage.bucket}/media/{key}"
        images.assert_no_metadata(s3_storage.get(key))
    # The local /media route serves nothing for S3.
    assert shutter.client.get(f"/media/{row.derivatives['thumbnail']['key']}").status_code == 404

    keys = stored_keys(row)
    assert all(s3_storage.exists(key) for key in keys)
    assert shutter.delete(f"/v1/media/{media['id']}", alice).status_code == 200
    assert photo_row(s3_app, media["id"]) is None
    assert not any(s3_storage.exists(key) for key in keys)
    listed = s3_storage.client.list_objects_v2(Bucket=s3_storage.bucket).get("KeyCount")
    assert listed == 0
