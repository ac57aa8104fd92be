"""Logging that never writes a secret: tokens, passwords and keys are masked."""
from __future__ import annotations

import logging
import re

# A name, then its value: `name=value`, `name: value`, `"name": "value"`, a tuple's
# `('name', 'value')` and a percent-encoded `name%3Dvalue` (oauthlib's debug lines print
# OAuth 1.0a's parameters and signature base string so). `state` binds an OAuth flow to
# its user (app/sharing/linking.py); oauthlib's Client prints the access token as resource_owner_key.
_SECRET = re.compile(
    r"(?i)((?:access_token|client_secret|consumer_secret|password|code|oauth_token|oauth_verifier|verify_token"
    r"|resource_owner_key|secret|sig|state)"
    r"(?:[\"']?\s*[=:]\s*[\"']?|['\"]\s*,\s*['\"]|%3D))"
    r"(?:(?!%26)[^&\s\"',;])+"  # up to the next parameter, plain or percent-encoded (%26)
)
_SECRET_HEADER = re.compile(r"(?i)secret|token|password|signature")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _SECRET.sub(r"\1[redacted]", text))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _redacting(make_record):
    """Wraps the LogRecord factory: a record is masked as it is made, so whatever
    handler gets it (gunicorn's, Celery's, which replace the root handlers, pytest's)
    never sees the secret. A filter on the root handlers missed those."""
    scrub = RedactingFilter()

    def factory(*args, **kwargs):
        record = make_record(*args, **kwargs)
        try:
            scrub.filter(record)
        except Exception:  # a bad format string: the handler reports it, as logging does
            pass
        return record

    factory.redacting = True
    return factory


def configure_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(logging.getLogRecordFactory(), "redacting", False):
        logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))


# Beside sentry-sdk's DEFAULT_DENYLIST (password, secret, token, …): the names our secrets
# go by, in request data, headers and cookies and in every frame's local variables.
SENTRY_DENYLIST = [
    "current_password", "client_secret", "access_token", "refresh_token", "code", "sig", "oauth_token",
    "oauth_verifier", "verify_token", "raw", "token_hash", "password_hash", "secret_key", "aws_secret_access_key",
]


def init_sentry(dsn: str, **options) -> None:
    """sentry-sdk for an API or worker process: secrets scrubbed from everything an event carries."""
    import sentry_sdk
    from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber

    scrubber = EventScrubber(recursive=True, denylist=DEFAULT_DENYLIST + SENTRY_DENYLIST)
    # send_default_pii is left unset (off; sentry-sdk 2.75 deprecates passing it), and so is
    # data_collection: setting that makes sentry-sdk drop the event_scrubber.
    sentry_sdk.init(dsn=dsn, event_scrubber=scrubber, before_send=scrub_sentry_event, **options)


def scrub_sentry_event(event, _hint):
    """sentry-sdk's before_send: the same masking for what goes to Sentry."""
    request = event.get("request") or {}
    for part in ("query_string", "data", "cookies"):
        if isinstance(request.get(part), str):
            request[part] = redact(request[part])
        elif isinstance(request.get(part), dict):
            request[part] = {k: "[redacted]" if _SECRET.match(f"{k}=") else v for k, v in request[part].items()}
    headers = request.get("headers") or {}
    for name in list(headers):
        # EventScrubber matches whole names; a client's own header (X-Client-Secret, X-Api-Token) too
        if name.lower() in {"authorization", "cookie"} or _SECRET_HEADER.search(name):
            headers[name] = "[redacted]"
    for entry in (event.get("breadcrumbs") or {}).get("values", []):
        if isinstance(entry.get("message"), str):
            entry["message"] = redact(entry["message"])
    if isinstance((event.get("logentry") or {}).get("message"), str):
        event["logentry"]["message"] = redact(event["logentry"]["message"])
    return event
