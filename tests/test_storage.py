"""Storage service against both backends: a local folder and S3 (moto server)."""
from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
import uuid

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from app.config import Settings
from app.media.storage import (
    CACHE_CONTROL,
    LocalStorage,
    S3Storage,
    StorageError,
    StorageNotFound,
    storage_from_settings,
)

# Every byte value, so text-mode or encoding mistakes show up.
BLOB = bytes(range(256)) * 64 + os.urandom(1024)


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    if request.param == "local":
        return LocalStorage(str(tmp_path / "media"), "/media")
    return request.getfixturevalue("s3_storage")


# --- both backends ---------------------------------------------------------


def test_round_trip_binary(storage):
    storage.put("ab/cd/1_640.jpg", BLOB, "image/jpeg")
    assert storage.get("ab/cd/1_640.jpg") == BLOB


def test_put_twice_is_fine(storage):
    storage.put("ab/1.jpg", b"one", "image/jpeg")
    storage.put("ab/1.jpg", b"one", "image/jpeg")
    assert storage.get("ab/1.jpg") == b"one"
    storage.put("ab/1.jpg", b"two", "image/jpeg")
    assert storage.get("ab/1.jpg") == b"two"


def test_exists(storage):
    assert not storage.exists("ab/1.jpg")
    storage.put("ab/1.jpg", b"x", "image/jpeg")
    assert storage.exists("ab/1.jpg")
    assert not storage.exists("ab")  # a "directory" is not an object


def test_get_missing_raises_not_found(storage):
    with pytest.raises(StorageNotFound):
        storage.get("nope/1.jpg")
    assert issubclass(StorageNotFound, StorageError)  # tasks retry on the base


def test_delete_including_missing_keys(storage):
    storage.put("a/1.jpg", b"1", "image/jpeg")
    storage.put("a/2.jpg", b"2", "image/jpeg")
    storage.put("a/3.jpg", b"3", "image/jpeg")
    storage.delete(k for k in ["a/1.jpg", "a/2.jpg", "a/missing.jpg"])  # any iterable
    storage.delete([])
    assert not storage.exists("a/1.jpg")
    assert not storage.exists("a/2.jpg")
    assert storage.exists("a/3.jpg")


def test_delete_more_than_one_batch(storage, monkeypatch):
    keys = [f"batch/{i}.jpg" for i in range(1005)]
    # Missing keys are fine to delete, so only seed some on both sides of the
    # 1000-key boundary: 1005 HTTP puts to moto would cost seconds.
    seeded = [keys[0], keys[999], keys[1000], keys[-1]]
    for key in seeded:
        storage.put(key, b"x", "image/jpeg")
    calls = []
    if isinstance(storage, S3Storage):
        real = storage.client.delete_objects
        # monkeypatch: the client is shared across tests
        monkeypatch.setattr(
            storage.client, "delete_objects", lambda **kw: calls.append(kw) or real(**kw)
        )
    storage.delete(keys + ["batch/missing.jpg"])
    assert not any(storage.exists(k) for k in seeded)
    if isinstance(storage, S3Storage):
        assert [len(c["Delete"]["Objects"]) for c in calls] == [1000, 6]
        left = storage.client.list_objects_v2(Bucket=storage.bucket)
        assert left["KeyCount"] == 0


@pytest.mark.parametrize(
    "key", ["../x.jpg", "a/../../x.jpg", "/etc/passwd", "a\\..\\x.jpg", "", "a//b.jpg", "./a.jpg"]
)
def test_bad_keys_refused(storage, key):
    for call in (
        lambda: storage.put(key, b"x", "image/jpeg"),
        lambda: storage.get(key),
        lambda: storage.exists(key),
        lambda: storage.delete([key]),
        lambda: storage.url(key),
    ):
        with pytest.raises(ValueError):
            call()


def test_check_ok(storage):
    storage.check()


# --- local -----------------------------------------------------------------


def test_local_traversal_writes_nothing_outside(tmp_path):
    storage = LocalStorage(str(tmp_path / "media"), "/media")
    with pytest.raises(ValueError):
        storage.put("../escaped.jpg", b"x", "image/jpeg")
    assert not (tmp_path / "escaped.jpg").exists()


def test_local_put_is_atomic_and_readable(tmp_path, monkeypatch):
    storage = LocalStorage(str(tmp_path), "/media")
    storage.put("ab/1.jpg", b"old", "image/jpeg")
    assert os.stat(tmp_path / "ab" / "1.jpg").st_mode & 0o777 == 0o644  # web server reads it

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError):
        storage.put("ab/1.jpg", b"new", "image/jpeg")
    monkeypatch.undo()
    assert storage.get("ab/1.jpg") == b"old"  # never half-written
    assert os.listdir(tmp_path / "ab") == ["1.jpg"]  # temp file cleaned up


def test_local_url(tmp_path):
    assert LocalStorage(str(tmp_path), "/media/").url("ab/cd/x.jpg") == "/media/ab/cd/x.jpg"
    cdn = LocalStorage(str(tmp_path), "https://cdn.example.com/")
    assert cdn.url("ab/cd/x.jpg") == "https://cdn.example.com/ab/cd/x.jpg"


def test_local_check_fails_when_root_unusable(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageError):
        LocalStorage(str(tmp_path / "file" / "media"), "/media").check()


# --- s3 --------------------------------------------------------------------


def test_s3_object_metadata(s3_storage):
    s3_storage.put("ab/1.jpg", BLOB, "image/jpeg")
    head = s3_storage.client.head_object(Bucket=s3_storage.bucket, Key="media/ab/1.jpg")
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == CACHE_CONTROL
    assert head["ContentLength"] == len(BLOB)


def test_s3_url_is_fetchable(s3_storage, moto_s3_url):
    # Objects are private by default (moto enforces it like S3): public reads
    # come from a bucket policy, which ops set on the real bucket.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{s3_storage.bucket}/*",
            }
        ],
    }
    s3_storage.client.put_bucket_policy(Bucket=s3_storage.bucket, Policy=json.dumps(policy))
    s3_storage.put("ab/1.jpg", BLOB, "image/jpeg")
    url = s3_storage.url("ab/1.jpg")
    assert url == f"{moto_s3_url}/{s3_storage.bucket}/media/ab/1.jpg"
    with urllib.request.urlopen(url, timeout=5) as resp:  # anonymous, like a browser
        assert resp.read() == BLOB
        assert resp.headers["Cache-Control"] == CACHE_CONTROL


def test_s3_urls_without_endpoint():
    client = object()  # url() never talks to S3
    assert (
        S3Storage("photos", region="eu-west-1", client=client).url("ab/1.jpg")
        == "https://photos.s3.eu-west-1.amazonaws.com/ab/1.jpg"
    )
    assert (
        S3Storage("my.photos", prefix="/media/", client=client).url("ab/1.jpg")
        == "https://s3.us-east-1.amazonaws.com/my.photos/media/ab/1.jpg"
    )
    # The CDN's origin is the bucket, so the object key (prefix included) follows it.
    cdn = S3Storage("photos", prefix="media", base_url="https://cdn.example.com/", client=client)
    assert cdn.url("ab/1.jpg") == "https://cdn.example.com/media/ab/1.jpg"


def test_s3_check_fails_on_missing_bucket(moto_s3_url):
    storage = S3Storage(f"missing-{uuid.uuid4().hex[:12]}", endpoint_url=moto_s3_url)
    with pytest.raises(StorageError):
        storage.check()
    # A missing bucket is a broken setup, not a missing photo.
    with pytest.raises(StorageError) as info:
        storage.get("ab/1.jpg")
    assert not isinstance(info.value, StorageNotFound)


def test_s3_unreachable_becomes_storage_error(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    storage = S3Storage(
        "photos",
        endpoint_url=f"http://127.0.0.1:{port}",
        connect_timeout=0.5,
        read_timeout=0.5,
        max_attempts=1,
    )
    start = time.monotonic()
    for call in (
        lambda: storage.put("ab/1.jpg", b"x", "image/jpeg"),
        lambda: storage.get("ab/1.jpg"),
        lambda: storage.exists("ab/1.jpg"),
        lambda: storage.delete(["ab/1.jpg"]),
        storage.check,
    ):
        with pytest.raises(StorageError) as info:
            call()
        assert isinstance(info.value.__cause__, EndpointConnectionError)
    assert time.monotonic() - start < 5


def test_s3_partial_delete_failure_is_an_error(s3_storage):
    with Stubber(s3_storage.client) as stub:
        stub.add_response(
            "delete_objects",
            {"Errors": [{"Key": "media/a.jpg", "Code": "AccessDenied", "Message": "no"}]},
        )
        with pytest.raises(StorageError, match="AccessDenied"):
            s3_storage.delete(["a.jpg"])


# --- factory ---------------------------------------------------------------


def test_storage_from_settings(tmp_path):
    local = storage_from_settings(Settings(media_root=str(tmp_path)))
    assert isinstance(local, LocalStorage)
    assert local.url("ab/1.jpg") == "/media/ab/1.jpg"

    cdn = storage_from_settings(Settings(media_root=str(tmp_path), cdn_url="https://cdn.x.com"))
    assert cdn.url("ab/1.jpg") == "https://cdn.x.com/ab/1.jpg"

    s3 = storage_from_settings(
        Settings(storage_backend="s3", s3_bucket="photos", s3_prefix="media", s3_region="eu-west-1")
    )
    assert isinstance(s3, S3Storage)
    assert s3.url("ab/1.jpg") == "https://photos.s3.eu-west-1.amazonaws.com/media/ab/1.jpg"

    with pytest.raises(ValueError):
        storage_from_settings(Settings(storage_backend="s3"))
    with pytest.raises(ValueError):
        storage_from_settings(Settings(storage_backend="ftp"))
