"""A subscriber's callback for the tests: a real HTTP server on a loopback port.

It answers v1's handshake (GET with hub.challenge) as told, records every delivery
(POST) with its headers and raw body, answers the next POSTs with the statuses it is
given (then 200), and counts the connections it accepted, so a test can show that a
refused callback was never connected to. `hold()` makes it a slow subscriber: every POST
waits, unanswered, until `release()`.
"""
from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: str  # the raw body, as SubscriptionsReactor.process takes it


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, callback: "CallbackServer", address, family):
        self.address_family = family
        self.callback = callback
        super().__init__(address, _Handler)

    def get_request(self):
        accepted = super().get_request()
        with self.callback.lock:
            self.callback.connections += 1
        return accepted


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # quiet
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        callback = self.server.callback
        query = {name: values[0] for name, values in parse_qs(urlsplit(self.path).query).items()}
        with callback.lock:
            callback.handshakes.append(query)
        challenge = query.get("hub.challenge", "").encode()
        if callback.handshake == "echo":
            self._answer(200, challenge)
        elif callback.handshake == "wrong":
            self._answer(200, b"not-the-challenge")
        elif callback.handshake == "redirect":
            self._answer(302, b"", {"Location": callback.redirect_to})
        else:  # an HTTP status
            self._answer(int(callback.handshake), challenge)

    def do_POST(self):
        callback = self.server.callback
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not callback.released.is_set():
            with callback.lock:
                callback.waiting += 1
            callback.released.wait(120)
            with callback.lock:
                callback.waiting -= 1
        with callback.lock:
            callback.deliveries.append(Delivery(self.path, dict(self.headers.items()), body.decode()))
            status = callback.post_statuses.pop(0) if callback.post_statuses else 200
        headers = {"Location": callback.redirect_to} if 300 <= status < 400 else None
        self._answer(status, b"ok", headers)


class CallbackServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.lock = threading.Lock()
        self.handshake = "echo"  # echo | wrong | redirect | an HTTP status such as "404"
        self.redirect_to = "http://127.0.0.1:9/elsewhere"
        self.post_statuses: list[int] = []  # the next POSTs' answers, then 200
        self.handshakes: list[dict] = []
        self.deliveries: list[Delivery] = []
        self.connections = 0
        self.released = threading.Event()  # cleared by hold(): POSTs wait for release()
        self.released.set()
        self.waiting = 0  # POSTs held open right now
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = _Server(self, (host, 0), family)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/callback", host: str | None = None) -> str:
        host = host or self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}{path}"

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def __enter__(self) -> "CallbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False
