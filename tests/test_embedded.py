"""The embedded redis-server (app/platform/embedded.py): no Flask, no database."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from app.platform.embedded import PIDFILE, EmbeddedRedis


@pytest.fixture
def server(tmp_path):
    srv = EmbeddedRedis.start(tmp_path / "redis")
    yield srv
    srv.stop()


def client(srv: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(srv.url, socket_timeout=5)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_starts_on_a_free_loopback_port(server):
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    r = client(server)
    assert r.ping()
    assert r.config_get("bind")["bind"] == "127.0.0.1"
    assert r.config_get("appendonly")["appendonly"] == "yes"
    assert r.config_get("appendfsync")["appendfsync"] == "everysec"
    assert r.info("server")["process_id"] == server.process.pid
    assert (server.directory / PIDFILE).read_text().strip() == str(server.process.pid)


def test_geosearch(server):
    r = client(server)
    assert tuple(int(p) for p in r.info("server")["redis_version"].split(".")[:2]) >= (6, 2)
    r.geoadd("geo:photos", (-122.4194, 37.7749, "sf"))
    r.geoadd("geo:photos", (-122.2711, 37.8044, "oakland"))
    r.geoadd("geo:photos", (-118.2437, 34.0522, "la"))
    near = r.geosearch("geo:photos", longitude=-122.41, latitude=37.77,
                       radius=20, unit="km", sort="ASC")
    assert near == [b"sf", b"oakland"]


def test_data_survives_restart_in_same_directory(tmp_path):
    directory = tmp_path / "redis"
    first = EmbeddedRedis.start(directory)
    client(first).zadd("feed:1", {"42": 42, "43": 43})
    first.stop()
    assert (directory / "appendonly.aof").exists()

    second = EmbeddedRedis.start(directory)
    try:
        assert client(second).zrange("feed:1", 0, -1) == [b"42", b"43"]
    finally:
        second.stop()


def test_explicit_port(tmp_path):
    from app.platform.embedded import _free_port

    port = _free_port()
    with EmbeddedRedis.start(tmp_path / "redis", port=port) as srv:
        assert srv.port == port and client(srv).ping()


def test_stop_leaves_no_process(tmp_path):
    srv = EmbeddedRedis.start(tmp_path / "redis")
    pid = srv.process.pid
    srv.stop()
    assert srv.process.returncode is not None
    assert gone(pid)
    assert not (srv.directory / PIDFILE).exists()
    srv.stop()  # idempotent


def test_stale_server_in_same_directory_is_stopped(tmp_path):
    directory = tmp_path / "redis"
    old = EmbeddedRedis.start(directory)
    client(old).set("kept", "yes")
    new = EmbeddedRedis.start(directory)  # as after a crashed `make run`
    try:
        old.process.wait(timeout=10)
        assert client(new).get("kept") == b"yes"
    finally:
        new.stop()
        old.stop()


def test_pidfile_of_another_program_is_left_alone(tmp_path):
    directory = tmp_path / "redis"
    directory.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (directory / PIDFILE).write_text(f"{other.pid}\n")
        with EmbeddedRedis.start(directory) as srv:
            assert client(srv).ping()
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_port_in_use_is_a_clear_error(server, tmp_path):
    with pytest.raises(RuntimeError, match="already in use") as err:
        EmbeddedRedis.start(tmp_path / "other", port=server.port)
    assert "Address already in use" in str(err.value)  # the log's tail
