"""Logging that never writes a secret (tokens, passwords and keys are masked), and that
follows one request: its id is on every line of the request and of every task it set off.

    LOG_FORMAT=text (default)  readable lines, `request_id=…` at the end when there is one
    LOG_FORMAT=json            one JSON object a line (python-json-logger), `request_id` a field,
                               and in a worker `task_id` and `task_name` on the lines of a task

The id lives in a context variable: set from X-Request-Id (app.factory), carried in
the headers of every task published meanwhile (Celery's before_task_publish), and
set again around each task from its headers (task_prerun), so tasks a task
enqueues inherit it. The running task's id and name live in another, set around
each run (a pool child's, or a greenlet's under gevent: each has its own context).
"""
from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-Id"
# A client's id is kept only when it is short and plain (a UUID, nginx's $request_id):
# anything else, which could forge log lines or bloat them, is replaced by one of ours.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_task: ContextVar[tuple[str, str] | None] = ContextVar("task", default=None)  # (id, name) of the run
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s"


def current_request_id() -> str | None:
    return _request_id.get()


def request_id_from(header: str | None) -> str:
    """The client's id when it is acceptable, else a new one."""
    if header and _VALID_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def bind_request_id(value: str | None):
    """Sets the current id; returns the token for reset_request_id."""
    return _request_id.set(value)


def reset_request_id(token) -> None:
    _request_id.reset(token)

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
        record.request_id = _request_id.get()
        task = _task.get()
        if task is not None:
            record.task_id, record.task_name = task
        try:
            scrub.filter(record)
        except Exception:  # a bad format string: the handler reports it, as logging does
            pass
        return record

    factory.redacting = True
    return factory


def _celery_task_of(record: logging.LogRecord) -> tuple[str, str] | None:
    """The task a line of Celery's own is about, outside its run (`Task … received` in a worker's
    main process): Celery passes the task's id and name as the record's `data` (an `extra`, set
    after the record factory ran: hence read when formatting)."""
    data = getattr(record, "data", None)
    if isinstance(data, dict) and data.get("id") and data.get("name"):
        return str(data["id"]), str(data["name"])
    return None


class TextFormatter(logging.Formatter):
    """Any formatter's line (gunicorn's, Celery's), with the request id after it."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} request_id={request_id}" if request_id else line


class _JsonFormatter(JsonFormatter):
    """The record's extras (a task's task_id and task_name, …) become fields too; the
    message is the masked one (the record factory masked it before any handler ran)."""

    def add_fields(self, log_data, record, message_dict) -> None:
        super().add_fields(log_data, record, message_dict)
        if "task_id" not in log_data and (task := _celery_task_of(record)) is not None:
            log_data["task_id"], log_data["task_name"] = task


def json_formatter() -> logging.Formatter:
    return _JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"})


def formatter_for(log_format: str, inner: logging.Formatter | None = None) -> logging.Formatter:
    if log_format == "json":
        return json_formatter()
    if log_format in ("", "text"):
        return inner if isinstance(inner, TextFormatter) else TextFormatter(inner)
    raise ValueError(f"LOG_FORMAT must be text or json, not {log_format!r}")


def format_handlers(logger: logging.Logger, log_format: str) -> None:
    for handler in logger.handlers:
        handler.setFormatter(formatter_for(log_format, handler.formatter))


def configure_logging(level: int = logging.INFO, log_format: str = "text") -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=TEXT_FORMAT)
        format_handlers(root, log_format)
    if not getattr(logging.getLogRecordFactory(), "redacting", False):
        logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))


def connect_celery_logging(log_format: str) -> None:
    """Workers: Celery's handlers get our format, and the request id travels with each task."""
    from celery import signals

    def on_setup_logger(logger=None, **_kwargs):
        if logger is not None:
            format_handlers(logger, log_format)

    def on_publish(headers=None, **_kwargs):
        request_id = _request_id.get()
        if request_id and headers is not None and not headers.get("request_id"):
            headers["request_id"] = request_id

    def on_prerun(task=None, **_kwargs):
        if task is None:
            return
        request_id = getattr(task.request, "request_id", None)
        task.request.shutter_request_id_token = _request_id.set(request_id)
        task.request.shutter_task_token = _task.set((task.request.id, task.name))

    def on_postrun(task=None, **_kwargs):
        if task is None:
            return
        for name, variable in (("shutter_request_id_token", _request_id), ("shutter_task_token", _task)):
            token = getattr(task.request, name, None)
            if token is not None:
                setattr(task.request, name, None)
                variable.reset(token)

    # weak=False: the receivers are local functions; dispatch_uid: one each, however many apps are made.
    signals.after_setup_logger.connect(on_setup_logger, weak=False, dispatch_uid="shutter-log-format")
    signals.after_setup_task_logger.connect(on_setup_logger, weak=False, dispatch_uid="shutter-task-log-format")
    signals.before_task_publish.connect(on_publish, weak=False, dispatch_uid="shutter-request-id-publish")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid="shutter-request-id-prerun")
    signals.task_postrun.connect(on_postrun, weak=False, dispatch_uid="shutter-request-id-postrun")


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
    """sentry-sdk's before_send: the same masking for what goes to Sentry, and the request id as a tag."""
    request_id = _request_id.get()
    if request_id:
        event.setdefault("tags", {})["request_id"] = request_id
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
    # Frames' variables by value: a repr can hold a secret under a name the denylist does not
    # know (werkzeug's Request repr is its URL, an access_token in the query included).
    for part in ("exception", "threads"):
        for value in (event.get(part) or {}).get("values", []):
            for frame in (value.get("stacktrace") or {}).get("frames", []):
                if "vars" in frame:
                    frame["vars"] = _redact_values(frame["vars"])
    return event


def _redact_values(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_values(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact_values(item) for item in value]
    return value
