"""Photo storage: one interface, a local-disk backend and an S3 backend.

Keys are relative, '/'-separated paths (e.g. "ab/cd/123_640.jpg"). They are
content-addressed by photo id and never rewritten with different bytes, which
is why S3 objects are served with an immutable, year-long Cache-Control.

Every backend failure surfaces as StorageError so Celery tasks can retry on
that one exception; a missing key is StorageNotFound (a StorageError too).
"""
from __future__ import annotations

import abc
import os
import tempfile
from collections.abc import Iterable, Iterator
from itertools import islice
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

CACHE_CONTROL = "public, max-age=31536000, immutable"
# What the local /media route serves: derivatives and profile pictures, never originals/.
SERVED_PREFIXES = ("photos", "profiles")
# …and only as an image: a key with any other extension is not served.
SERVED_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
DELETE_BATCH = 1000  # S3 DeleteObjects accepts at most 1000 keys per call


class StorageError(Exception):
    """The backend failed (network, permissions, disk...); usually worth a retry."""


class StorageNotFound(StorageError):
    """The key does not exist."""


def _check_key(key: str) -> str:
    # Both backends apply the same rules so code that works against local
    # storage in dev behaves the same on S3 in production.
    if not isinstance(key, str) or not key:
        raise ValueError("storage key must be a non-empty string")
    if key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"invalid storage key: {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


def is_clean_key(key: str) -> bool:
    """A key that names itself: no empty, '.' or '..' segment, no backslash or NUL."""
    try:
        _check_key(key)
    except ValueError:
        return False
    return True


def served_type(key: str) -> str | None:
    """The Content-Type a key is served with, or None when it is not served (not clean,
    not under a served prefix, not an image). Exact case: "Photos/" is not "photos/"."""
    if not is_clean_key(key):
        return None
    prefix, _, rest = key.partition("/")
    if prefix not in SERVED_PREFIXES or "." not in rest:
        return None
    return SERVED_TYPES.get(rest.rpartition(".")[2])


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


class Storage(abc.ABC):
    @abc.abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store data atomically; overwriting an existing key is fine."""

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the bytes, or raise StorageNotFound."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete keys; missing ones are silently skipped."""

    @abc.abstractmethod
    def url(self, key: str) -> str:
        """Public URL of the object (relative for local storage without a CDN)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise StorageError if the backend is unusable (health check)."""


class LocalStorage(Storage):
    """Files under a directory, served by the web server at base_url."""

    def __init__(self, root: str, base_url: str):
        self.root = os.path.abspath(root)
        self.base_url = base_url.rstrip("/")

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *_check_key(key).split("/"))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        # content_type is unused: the web server derives it from the extension.
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
            # Temp file in the same directory so os.replace is an atomic
            # rename on one filesystem: readers see the old file or the new.
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # no empty file under the real name after a crash
            # mkstemp makes 0600 files; the web server must be able to read them.
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise StorageError(f"cannot write {key}: {exc}") from exc

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise StorageNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                os.unlink(self._path(key))
            except (FileNotFoundError, NotADirectoryError):
                pass
            except OSError as exc:
                raise StorageError(f"cannot delete {key}: {exc}") from exc

    def url(self, key: str) -> str:
        return f"{self.base_url}/{quote(_check_key(key))}"

    def served_file(self, key: str) -> tuple[str, str] | None:
        """(path, Content-Type) of a key the web server may serve, or None.

        Decided on the resolved path too: a symlink cannot lead out of a served folder."""
        content_type = served_type(key)
        if content_type is None:
            return None
        path = os.path.realpath(self._path(key))
        folder = os.path.realpath(os.path.join(self.root, key.partition("/")[0]))
        if os.path.commonpath([path, folder]) != folder or not os.path.isfile(path):
            return None
        return path, content_type

    def check(self) -> None:
        # Actually write a file: os.access() says nothing about a full disk
        # or some read-only mounts.
        try:
            os.makedirs(self.root, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".check-")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise StorageError(f"media root {self.root} is not writable: {exc}") from exc


class S3Storage(Storage):
    """Objects in an S3 (or S3-compatible) bucket, under an optional prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        base_url: str | None = None,
        client=None,
        *,
        connect_timeout: float = 3,
        read_timeout: float = 10,
        max_attempts: int = 3,
    ):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.region = region
        self.base_url = base_url.rstrip("/") if base_url else None
        if client is None:
            config = Config(
                region_name=region,
                # total_max_attempts counts the first try ("max_attempts" here
                # would mean retries on top of it).
                retries={"mode": "standard", "total_max_attempts": max_attempts},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                # One client is shared by a gevent pool of workers.
                max_pool_connections=50,
                # S3-compatible servers (MinIO & co) expect path-style
                # addressing and often reject the newer default checksums.
                s3={"addressing_style": "path"} if endpoint_url else None,
                request_checksum_calculation="when_required" if endpoint_url else None,
                response_checksum_validation="when_required" if endpoint_url else None,
            )
            # A private session: the default one is not thread-safe to create clients from.
            client = boto3.session.Session().client(
                "s3", endpoint_url=self.endpoint_url, config=config
            )
        self.client = client

    def _key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @staticmethod
    def _code(exc: ClientError) -> str:
        return str(exc.response.get("Error", {}).get("Code", ""))

    def put(self, key: str, data: bytes, content_type: str) -> None:
        # A single PutObject is atomic on S3: readers see all or nothing.
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=data,
                ContentType=content_type,
                CacheControl=CACHE_CONTROL,
            )
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 put {key} failed: {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return resp["Body"].read()  # the body can also fail mid-stream
        except ClientError as exc:
            if self._code(exc) in ("NoSuchKey", "404"):
                raise StorageNotFound(key) from exc
            raise StorageError(f"S3 get {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 get {key} failed: {exc}") from exc

    def exists(self, key: str) -> bool:
        # Without s3:ListBucket, S3 answers 403 (not 404) for a missing key;
        # that is reported as an error rather than guessed.
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if self._code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StorageError(f"S3 head {key} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"S3 head {key} failed: {exc}") from exc

    def delete(self, keys: Iterable[str]) -> None:
        for chunk in _chunks((self._key(k) for k in keys), DELETE_BATCH):
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            except (BotoCoreError, ClientError) as exc:
                raise StorageError(f"S3 delete failed: {exc}") from exc
            # DeleteObjects returns 200 even when some keys failed.
            # (Missing keys are not errors on S3.)
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"S3 delete failed for {len(errors)} key(s), e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )

    def url(self, key: str) -> str:
        path = quote(self._key(key))
        if self.base_url:  # a CDN whose origin is the bucket
            return f"{self.base_url}/{path}"
        if self.endpoint_url:
            return f"{self.endpoint_url}/{self.bucket}/{path}"
        if "." in self.bucket:  # dotted names break the *.s3 TLS certificate
            return f"https://s3.{self.region}.amazonaws.com/{self.bucket}/{path}"
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{path}"

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 bucket {self.bucket} unusable: {exc}") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if needed. For tests and dev only: ops provision it."""
        kwargs = {"Bucket": self.bucket}
        if self.region != "us-east-1":  # us-east-1 rejects an explicit constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(**kwargs)
        except ClientError as exc:
            if self._code(exc) != "BucketAlreadyOwnedByYou":
                raise StorageError(f"cannot create bucket {self.bucket}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageError(f"cannot create bucket {self.bucket}: {exc}") from exc


def storage_from_settings(settings) -> Storage:
    if settings.storage_backend == "local":
        return LocalStorage(settings.media_root, settings.cdn_url or settings.media_url)
    if settings.storage_backend == "s3":
        if not settings.s3_bucket:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        return S3Storage(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url or None,
            region=settings.s3_region,
            base_url=settings.cdn_url or None,
        )
    raise ValueError(f"unknown STORAGE_BACKEND {settings.storage_backend!r}")
