"""Pytest plugin: the test's app behind a REAL HTTP server on a loopback port.

For clients that speak HTTP themselves (the official python-instagram client
uses httplib2, so Flask's test client cannot stand in for the server):

    def test_x(live_server):
        live_server.host   # "127.0.0.1:PORT"
        live_server.url    # "http://127.0.0.1:PORT"

It serves the same `app` fixture the `shutter` test client drives, so a test
may set up through one and call through the other. werkzeug's server, one
thread per request, stopped at teardown. Registered in tests/conftest.py.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest
from werkzeug.serving import make_server


@dataclass(frozen=True)
class LiveServer:
    host: str  # host:port, as python-instagram's `api.host` wants it

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(f"127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
