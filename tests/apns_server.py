"""A local APNs provider API for the tests: HTTP/2 over TLS on a loopback port.

It speaks the part of Apple's provider API that Shutter uses:
`POST /3/device/<token>` with a JSON payload, answered with an `apns-id` header
and, for an error, a `{"reason": "..."}` body (410 adds `timestamp`, in
milliseconds). Before it answers 200 it checks what Apple checks:

- the provider token: `authorization: bearer <JWT>`, ES256, `kid` the key id,
  `iss` the team id, the signature against the public half of the key it made
  (written as a .p8 PEM for Shutter to sign with), `iat` not older than an hour
  (403 ExpiredProviderToken) and, on one connection, a new token not within
  20 minutes of the previous one (429 TooManyProviderTokenUpdates);
- `apns-topic` (the topics it was given), `apns-push-type` (alert),
  `apns-priority` (5 or 10), `apns-expiration` (a number), `apns-collapse-id`
  (at most 64 bytes);
- the path's device token (hex, 64 to 200 characters) and the payload
  (a JSON object of at most 4 KB with an `aps` dict: alert a string or dict,
  badge a non-negative integer, sound a string).

A test scripts its answers: `answer(410, "Unregistered", token=...)` for one
device, `answer(429, "TooManyRequests", times=2)` for the next requests. It counts
the TCP connections it accepted, so a test shows that pushes share one.

    def test_x(apns_server, settings):
        settings = apns_server.configure(settings)   # APNS_* pointing here
"""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TEAM_ID = "TEAM123456"
KEY_ID = "KEY1234567"
TOPIC = "com.example.shutter"
TOKEN_MAX_AGE = 3600
TOKEN_MIN_INTERVAL = 20 * 60
MAX_PAYLOAD = 4096
DEVICE_TOKEN = re.compile(r"\A[0-9a-fA-F]{64,200}\Z")


@dataclass
class Received:
    """One request the server answered."""

    device_token: str
    headers: dict[str, str]
    payload: dict | None
    claims: dict | None  # the provider token's, once verified
    provider_token: str
    status: int
    reason: str
    connection: int  # which accepted connection carried it (1, 2, …)


@dataclass
class _Rule:
    status: int
    reason: str
    timestamp_ms: int | None = None
    times: int | None = None  # None: until cleared


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "apns-cert.pem", directory / "apns-cert-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class ApnsServer:
    def __init__(self, directory: Path, topics: tuple[str, ...] = (TOPIC,), clock=time.time) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.topics = set(topics)
        self.clock = clock
        # The team's signing key, as Apple's developer site hands it out: a PKCS#8 PEM (.p8).
        signing_key = ec.generate_private_key(ec.SECP256R1())
        self.key_file = directory / f"AuthKey_{KEY_ID}.p8"
        self.key_file.write_bytes(signing_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.public_key = signing_key.public_key()
        self.ca_file, cert_key = _self_signed(directory)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(self.ca_file, cert_key)
        self._tls.set_alpn_protocols(["h2"])
        self.lock = threading.Lock()
        self.connections = 0
        self.received: list[Received] = []
        self.provider_tokens: list[tuple[str, int]] = []  # each token a connection started using, and its iat
        self._verified: dict[str, dict] = {}
        self._connection_tokens: dict[int, tuple[str, int]] = {}  # connection -> its token and iat
        self._next: list[_Rule] = []
        self._by_token: dict[str, _Rule] = {}
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self.answered: dict[int, int] = {}  # status -> how many

    # -- scripting ----------------------------------------------------------------------
    def answer(self, status: int, reason: str = "", token: str | None = None, times: int | None = None,
               timestamp_ms: int | None = None) -> None:
        """Answer `status` (with `reason`) to `token`'s requests, or to the next `times` requests."""
        rule = _Rule(status, reason, timestamp_ms, times)
        with self.lock:
            if token is not None:
                self._by_token[token.lower()] = rule
            else:
                self._next.append(rule)

    def clear(self) -> None:
        with self.lock:
            self._next.clear()
            self._by_token.clear()

    def configure(self, settings, **changes):
        """`settings` with APNS_* pointing at this server (both hosts: 127.0.0.1)."""
        return dataclasses.replace(
            settings, apns_key_id=KEY_ID, apns_team_id=TEAM_ID, apns_key_file=str(self.key_file),
            apns_topic=sorted(self.topics)[0], apns_host="127.0.0.1", apns_sandbox_host="127.0.0.1",
            apns_port=self.port, apns_ca_file=str(self.ca_file), **changes)

    def sent(self) -> list[Received]:
        """The requests answered 200."""
        with self.lock:
            return [r for r in self.received if r.status == 200]

    def wait_for(self, count: int, timeout: float = 20.0, status: int | None = 200) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [r for r in self.received if status is None or r.status == status]
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests answered {status}, got {len(got)}: {self.received}")

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> "ApnsServer":
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, name="apns-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            except OSError:
                pass
            listener.close()
        with self.lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        listener = self._listener
        while self._listener is not None:
            try:
                sock, _address = listener.accept()
            except OSError:
                return
            if self._listener is None:
                sock.close()
                return
            with self.lock:
                self.connections += 1
                number = self.connections
                self._sockets.add(sock)
            threading.Thread(target=self._serve, args=(sock, number), name=f"apns-{number}", daemon=True).start()

    def _serve(self, raw: socket.socket, number: int) -> None:
        try:
            sock = self._tls.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        with self.lock:
            self._sockets.add(sock)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000})  # as Apple's servers
        streams: dict[int, tuple[dict, bytearray]] = {}
        try:
            sock.sendall(conn.data_to_send())
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = (dict(event.headers), bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        self._respond(conn, event.stream_id, headers, bytes(body), number)
                    elif isinstance(event, h2.events.StreamReset):
                        streams.pop(event.stream_id, None)
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        sock.sendall(conn.data_to_send())
                        return
                sock.sendall(conn.data_to_send())
        except (OSError, ssl.SSLError):
            return
        finally:
            with self.lock:
                self._sockets.discard(sock)
            sock.close()

    # -- the provider API ----------------------------------------------------------------------
    def _respond(self, conn, stream_id: int, headers: dict, body: bytes, number: int) -> None:
        path = headers.get(":path", "")
        device_token = path.rsplit("/", 1)[-1] if path.startswith("/3/device/") else ""
        payload, claims = None, None
        status, reason = self._check_request(headers, device_token)
        if not status:
            provider_token = headers.get("authorization", "")[len("bearer "):]
            claims, status, reason = self._check_provider_token(provider_token, number)
        if not status:
            payload, status, reason = self._check_payload(body)
        timestamp_ms = None
        if not status:
            status, reason, timestamp_ms = self._scripted(device_token)
        apns_id = headers.get("apns-id") or str(uuid.uuid4()).upper()
        with self.lock:
            self.received.append(Received(device_token, headers, payload, claims,
                                          headers.get("authorization", "")[len("bearer "):], status, reason, number))
            self.answered[status] = self.answered.get(status, 0) + 1
        answer = [(":status", str(status)), ("apns-id", apns_id)]
        if status == 200:
            conn.send_headers(stream_id, answer, end_stream=True)
            return
        error = {"reason": reason}
        if status == 410:
            error["timestamp"] = timestamp_ms if timestamp_ms is not None else int(self.clock() * 1000)
        data = json.dumps(error).encode()
        conn.send_headers(stream_id, answer + [("content-type", "application/json"),
                                               ("content-length", str(len(data)))])
        conn.send_data(stream_id, data, end_stream=True)

    def _check_request(self, headers: dict, device_token: str) -> tuple[int, str]:
        if headers.get(":method") != "POST":
            return 405, "MethodNotAllowed"
        if not headers.get(":path", "").startswith("/3/device/"):
            return 404, "BadPath"
        if not DEVICE_TOKEN.match(device_token):
            return 400, "BadDeviceToken"
        if "authorization" not in headers or not headers["authorization"].startswith("bearer "):
            return 403, "MissingProviderToken"
        topic = headers.get("apns-topic")
        if not topic:
            return 400, "MissingTopic"
        if topic not in self.topics:
            return 400, "BadTopic"
        if headers.get("apns-push-type") != "alert":
            return 400, "InvalidPushType"
        if headers.get("apns-priority", "10") not in ("5", "10"):
            return 400, "BadPriority"
        if not headers.get("apns-expiration", "0").isdigit():
            return 400, "BadExpirationDate"
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return 400, "BadCollapseId"
        return 0, ""

    def _check_provider_token(self, provider_token: str, connection: int) -> tuple[dict | None, int, str]:
        with self.lock:
            claims = self._verified.get(provider_token)
        if claims is None:
            try:
                header = jwt.get_unverified_header(provider_token)
                if header.get("alg") != "ES256" or header.get("kid") != KEY_ID:
                    return None, 403, "InvalidProviderToken"
                claims = jwt.decode(provider_token, self.public_key, algorithms=["ES256"],
                                    options={"verify_iat": False, "require": ["iss", "iat"]})
            except jwt.PyJWTError:
                return None, 403, "InvalidProviderToken"
            if claims.get("iss") != TEAM_ID or not isinstance(claims.get("iat"), int):
                return None, 403, "InvalidProviderToken"
            with self.lock:
                self._verified[provider_token] = claims
        with self.lock:
            # A connection's provider may change its token at most every 20 minutes.
            previous = self._connection_tokens.get(connection)
            if previous is not None and previous[0] != provider_token:
                if claims["iat"] - previous[1] < TOKEN_MIN_INTERVAL:
                    return claims, 429, "TooManyProviderTokenUpdates"
            if previous is None or previous[0] != provider_token:
                self._connection_tokens[connection] = (provider_token, claims["iat"])
                self.provider_tokens.append((provider_token, claims["iat"]))
        if self.clock() - claims["iat"] > TOKEN_MAX_AGE:
            return claims, 403, "ExpiredProviderToken"
        return claims, 0, ""

    @staticmethod
    def _check_payload(body: bytes) -> tuple[dict | None, int, str]:
        if not body:
            return None, 400, "PayloadEmpty"
        if len(body) > MAX_PAYLOAD:
            return None, 413, "PayloadTooLarge"
        try:
            payload = json.loads(body)
        except ValueError:
            return None, 400, "BadPayload"
        aps = payload.get("aps") if isinstance(payload, dict) else None
        if not isinstance(aps, dict) or not aps:
            return payload, 400, "BadPayload"
        if "alert" in aps and not isinstance(aps["alert"], (str, dict)):
            return payload, 400, "BadPayload"
        badge = aps.get("badge", 0)
        if not isinstance(badge, int) or isinstance(badge, bool) or badge < 0:
            return payload, 400, "BadPayload"
        if "sound" in aps and not isinstance(aps["sound"], (str, dict)):
            return payload, 400, "BadPayload"
        return payload, 0, ""

    def _scripted(self, device_token: str) -> tuple[int, str, int | None]:
        with self.lock:
            rule = None
            if self._next:
                rule = self._next[0]
                rule.times = (rule.times or 1) - 1
                if rule.times <= 0:
                    self._next.pop(0)
            elif device_token.lower() in self._by_token:
                rule = self._by_token[device_token.lower()]
        if rule is None:
            return 200, "", None
        return rule.status, rule.reason, rule.timestamp_ms


@pytest.fixture
def apns_server(tmp_path):
    """A started local APNs server; stopped at teardown."""
    server = ApnsServer(tmp_path / "apns").start()
    yield server
    server.stop()
