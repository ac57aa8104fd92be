"""Pytest fixtures: a real-HTTP moto S3 server for the test session.

Server mode (rather than moto's in-process mock) so the code under test goes
through the real botocore HTTP stack: endpoints, retries, timeouts, errors.
Registered as a plugin: `pytest_plugins = ["tests.s3_server"]`.
"""
from __future__ import annotations

import uuid

import pytest
from moto.server import ThreadedMotoServer

from app.media.storage import S3Storage

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Never read a developer's ~/.aws files.
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
# Would override or redirect the settings above.
UNSET_AWS_ENV = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SECURITY_TOKEN")


@pytest.fixture(scope="session")
def moto_s3_url():
    with pytest.MonkeyPatch.context() as mp:
        for name, value in FAKE_AWS_ENV.items():
            mp.setenv(name, value)
        for name in UNSET_AWS_ENV:
            mp.delenv(name, raising=False)
        # Port 0: the OS picks a free port, so parallel runs never collide.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture(scope="session")
def _moto_s3_client(moto_s3_url):
    # Building a boto3 client costs ~0.1 s; share one built with the
    # production config (clients are thread-safe and bucket-agnostic).
    return S3Storage("unused", endpoint_url=moto_s3_url).client


@pytest.fixture
def s3_storage(moto_s3_url, _moto_s3_client):
    # A fresh bucket per test: moto keeps state for the whole session.
    storage = S3Storage(
        f"shutter-test-{uuid.uuid4().hex[:12]}",
        prefix="media",
        endpoint_url=moto_s3_url,
        region="us-east-1",
        client=_moto_s3_client,
    )
    storage.ensure_bucket()
    return storage
