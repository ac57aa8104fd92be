"""What every answer shares: the JSON envelope for errors of any kind, the
operators' endpoints, and logs that never hold a secret (issue 2)."""
from __future__ import annotations

import io
import logging
import socket

import marshmallow as ma
import pytest

from tests.support import PASSWORD, assert_error


# -- errors are always the envelope ------------------------------------------------------
def test_an_unknown_path_is_a_404_envelope(client, subtests):
    for path in ["/nowhere", "/v1/nowhere", "/v1/users/1/nowhere"]:
        with subtests.test(path=path):
            assert_error(client.get(path), 404, "APINotFoundError")


def test_a_wrong_method_is_a_405_envelope(client):
    response = client.delete("/v1/users")
    assert_error(response, 405, "APIMethodNotAllowedError")
    assert "POST" in response.headers["Allow"]


def test_a_body_over_the_upload_limit_is_a_413_envelope(make_app):
    client = make_app(max_upload_bytes=1024).test_client()
    response = client.post("/v1/users", data={"username": "alice", "password": "x" * 4096, "email": "a@example.com"})
    assert_error(response, 413, "APIRequestTooLargeError")


def test_an_unexpected_exception_is_a_500_envelope_without_traceback(make_app, caplog):
    app = make_app()

    @app.get("/v1/explode")
    def explode():
        raise RuntimeError("internal detail: do not show")

    response = app.test_client().get("/v1/explode")
    meta = assert_error(response, 500, "APIError")
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and "internal detail" not in body and "RuntimeError" not in meta["error_message"]
    # ...while the log keeps the traceback for the operators
    [record] = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert record.levelno == logging.ERROR


def test_bad_parameters_are_a_400_envelope_naming_the_field(shutter):
    meta = assert_error(shutter.signup("alice", password="short"), 400, "APIInvalidParametersError")
    assert "password" in meta["error_message"]


def test_a_nul_character_in_any_field_is_a_400_envelope_naming_it(shutter, subtests):
    """Found by test_fuzz.py: PostgreSQL refuses NUL in text, so these were 500s on the
    production stack (SQLite stored them)."""
    alice = shutter.account("alice")
    calls = {
        "full_name": lambda: shutter.signup("bob", full_name="a\x00b"),
        "q": lambda: shutter.get("/v1/users/search", alice, q="al\x00"),
        "bio": lambda: shutter.post("/v1/users/self", alice, bio="\x00"),
        "name": lambda: shutter.register_client("alice", name="app\x00"),
        "client_id": lambda: shutter.client.post("/oauth/access_token", data={
            "grant_type": "password", "client_id": "\x00", "client_secret": "x", "username": "alice",
            "password": PASSWORD}),
    }
    for field, call in calls.items():
        with subtests.test(field=field):
            meta = assert_error(call(), 400, "APIInvalidParametersError")
            assert field in meta["error_message"]


def test_the_nul_check_is_added_to_each_schema_once():
    from app.api.common import PageArgs

    for _ in range(3):
        schema = PageArgs()
    assert len(schema.fields["max_id"].validators) == 1  # the NUL check, not one per instance made
    assert PageArgs._declared_fields["max_id"].validators == []  # the class's field is left alone
    assert schema.load({"max_id": "12"})["max_id"] == "12"
    with pytest.raises(ma.ValidationError):
        schema.load({"max_id": "1\x002"})


# -- operators' endpoints ----------------------------------------------------------------
def test_docs_is_an_openapi_document_of_the_api(client):
    response = client.get("/docs")
    assert response.status_code == 200 and response.is_json
    document = response.json
    assert document["openapi"].startswith("3.")
    paths = set(document["paths"])
    assert {"/v1/users", "/v1/users/self", "/v1/users/{user_id}", "/v1/users/search",
            "/v1/users/{user_id}/follows", "/v1/users/{user_id}/followed-by", "/v1/users/self/requested-by",
            "/v1/users/{user_id}/relationship", "/v1/clients", "/oauth/access_token", "/oauth/authorize"} <= paths
    assert all(path.startswith(("/v1/", "/oauth/")) for path in paths)


def test_healthz_reports_every_component_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200, response.json
    assert response.json == {"meta": {"code": 200},
                             "data": {"database": "ok", "redis": "ok", "broker": "ok", "storage": "ok",
                                      "cache": "ok",
                                      # no APNS_*, TWITTER_* or FACEBOOK_* settings: switched off, and healthy
                                      "push": "off", "sharing": {"twitter": "off", "facebook": "off"}}}


def test_healthz_says_which_network_sharing_is_on_for(make_app):
    app = make_app(twitter_consumer_key="ck", twitter_consumer_secret="cs")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200, response.json
    assert response.json["data"]["sharing"] == {"twitter": "on", "facebook": "off"}


def test_healthz_names_a_component_that_is_down(make_app):
    app = make_app(memcached_servers=[f"127.0.0.1:{_closed_port()}"])
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["meta"]["error_type"] == "APIServiceUnavailable"
    assert response.json["data"]["cache"].startswith("down")
    assert response.json["data"]["database"] == "ok"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_metrics_counts_requests_in_prometheus_text(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert "# TYPE shutter_http_requests_total counter" in text or "# TYPE shutter_http_requests counter" in text
    assert any(line.startswith("shutter_http_requests_total{") and 'endpoint="/healthz"' in line
               for line in text.splitlines())


# -- secrets never reach the logs ------------------------------------------------------
def test_a_login_and_a_token_call_log_no_secret(shutter, caplog):
    caplog.set_level(logging.DEBUG)
    alice = shutter.account("alice")
    assert shutter.get("/v1/users/self", alice).status_code == 200
    assert shutter.get("/v1/users/self/nowhere", alice).status_code == 404
    # what a server's access log writes for such a call (werkzeug's, gunicorn's)
    logging.getLogger("werkzeug").info('%s - - "%s" %s', "127.0.0.1",
                                       f"GET /v1/users/self?access_token={alice.token} HTTP/1.1", 200)
    client = shutter.app_client()
    logging.getLogger("gunicorn.access").info("POST /oauth/access_token password=%s client_secret=%s",
                                              PASSWORD, client["client_secret"])
    assert "[redacted]" in caplog.text
    for secret in (alice.token, PASSWORD, client["client_secret"]):
        assert secret not in caplog.text
        assert all(secret not in record.getMessage() for record in caplog.records)


def test_records_are_masked_for_handlers_set_up_after_the_app(app):
    """Celery and gunicorn replace the root handlers after create_app: the masking must not depend on them."""
    stream = io.StringIO()
    logger = logging.getLogger("shutter.tests.late")
    logger.addHandler(logging.StreamHandler(stream))
    logger.propagate = False
    try:
        logger.warning("GET /v1/users/self?access_token=%s", "1.secret-token-value")
        logger.warning("Authorization: Bearer %s", "1.another-secret")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    assert "secret-token-value" not in stream.getvalue() and "another-secret" not in stream.getvalue()
    assert stream.getvalue().count("[redacted]") == 2
