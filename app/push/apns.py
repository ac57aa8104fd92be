"""APNs' HTTP/2 provider API with token-based authentication.

One `ApnsProvider` per process sends every notification through one
`httpx.Client(http2=True)` (built in app/services.py): requests to a host share
one TLS connection as HTTP/2 streams, so 200 greenlets of the io pool multiplex
over it instead of opening a connection each.

The provider token is a JWT signed ES256 with the team's .p8 key. Apple refuses
one older than an hour (403 ExpiredProviderToken) and one replaced more often
than every 20 minutes (429 TooManyProviderTokenUpdates), so `ProviderToken`
signs a new one when the cached one is REFRESH_AFTER (50 min) old, and on an
ExpiredProviderToken answer only if the refused token is at least MIN_AGE
(20 min) old and still the current one: many greenlets refused at once make one
new token, and a token refused while young (a clock off by an hour) is not
replaced in a loop.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Callable

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

REFRESH_AFTER = 50 * 60  # Apple: a new token at least once an hour
MIN_AGE = 20 * 60  # Apple: and no more often than once every 20 minutes

# The result of one notification, the value a metric counts.
SENT = "sent"
UNREGISTERED = "unregistered"  # 410: the app is gone from the device
BAD_TOKEN = "bad_token"  # 400 BadDeviceToken (e.g. a sandbox token sent to production)
EXPIRED_TOKEN = "expired_token"  # 403 ExpiredProviderToken that a new token did not cure
THROTTLED = "throttled"  # 429
PROVIDER_ERROR = "provider_error"  # 5xx, or no answer at all
REJECTED = "rejected"  # any other refusal (BadTopic, PayloadTooLarge, …): retrying cannot help
OFF_BY_PREFERENCE = "off_by_preference"  # the recipient switched this kind off (app.push.service)
RETRYABLE = frozenset({THROTTLED, PROVIDER_ERROR})
DEVICE_GONE = frozenset({UNREGISTERED, BAD_TOKEN})


class ProviderToken:
    """The cached provider authentication token (thread- and greenlet-safe)."""

    def __init__(self, key_id: str, team_id: str, private_key: str, clock: Callable[[], float] = time.time) -> None:
        self.key_id = key_id
        self.team_id = team_id
        # Loaded now, so that a file that is not Apple's .p8 key fails at start-up (and /healthz
        # says "down"), not at the first push.
        key = load_pem_private_key(private_key.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("APNS_KEY_FILE must hold an EC (P-256) private key, as Apple's .p8 files do")
        self._private_key = key
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._issued_at = 0.0
        self.signed = 0  # how many tokens this process made

    def current(self) -> str:
        with self._lock:
            if self._token is None or self._clock() - self._issued_at >= REFRESH_AFTER:
                self._sign()
            return self._token

    def replace(self, refused: str) -> bool:
        """APNs called `refused` expired: True when a newer token is there to retry with."""
        with self._lock:
            if self._token != refused:  # another request replaced it already
                return True
            if self._clock() - self._issued_at < MIN_AGE:
                return False
            self._sign()
            return True

    def _sign(self) -> None:
        now = self._clock()
        self._token = jwt.encode({"iss": self.team_id, "iat": int(now)}, self._private_key, algorithm="ES256",
                                 headers={"kid": self.key_id})
        self._issued_at = now
        self.signed += 1


@dataclass(frozen=True)
class Notification:
    """One push to one device; JSON-able (`as_dict`), the deliver task's message."""

    device_token: str
    environment: str  # production | sandbox
    topic: str
    payload: dict
    expiration: int  # apns-expiration: Unix seconds
    collapse_id: str | None = None
    priority: int = 10
    push_type: str = "alert"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Answer:
    result: str
    status: int  # 0: no answer
    reason: str = ""
    timestamp_ms: int | None = None  # 410: since when the token is invalid


def classify(status: int, reason: str) -> str:
    if status == 200:
        return SENT
    if status == 410:
        return UNREGISTERED
    if status == 400 and reason == "BadDeviceToken":
        return BAD_TOKEN
    if status == 403 and reason == "ExpiredProviderToken":
        return EXPIRED_TOKEN
    if status == 429:
        return THROTTLED
    if status >= 500:
        return PROVIDER_ERROR
    return REJECTED


class ApnsProvider:
    def __init__(self, http: httpx.Client, token: ProviderToken, hosts: dict[str, str], port: int = 443) -> None:
        self.http = http
        self.token = token
        self.hosts = hosts  # environment -> host name
        self.port = port

    def send(self, notification: Notification) -> Answer:
        """POST the notification; an ExpiredProviderToken answer is retried once with a new token."""
        provider_token = self.token.current()
        answer = self._post(notification, provider_token)
        if answer.result == EXPIRED_TOKEN and self.token.replace(provider_token):
            answer = self._post(notification, self.token.current())
        return answer

    def _post(self, n: Notification, provider_token: str) -> Answer:
        headers = {
            "authorization": f"bearer {provider_token}",
            "apns-topic": n.topic,
            "apns-push-type": n.push_type,
            "apns-priority": str(n.priority),
            "apns-expiration": str(n.expiration),
        }
        if n.collapse_id:
            headers["apns-collapse-id"] = n.collapse_id
        url = f"https://{self.hosts[n.environment]}:{self.port}/3/device/{n.device_token}"
        body = json.dumps(n.payload, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            response = self.http.post(url, content=body, headers=headers)
        except httpx.TransportError as error:  # refused, reset, timed out: as a 5xx, retried
            return Answer(PROVIDER_ERROR, 0, type(error).__name__)
        reason, timestamp = "", None
        if response.status_code != 200:
            try:
                error = response.json()
                reason, timestamp = str(error.get("reason", "")), error.get("timestamp")
            except (ValueError, AttributeError):
                pass
        return Answer(classify(response.status_code, reason), response.status_code, reason,
                      int(timestamp) if isinstance(timestamp, (int, float)) else None)
