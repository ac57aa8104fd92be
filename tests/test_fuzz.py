"""Property-based: every endpoint answers bad input with v1's JSON error
envelope and a 4xx, never a 500 or a traceback (API.md, "Conventions").

Schemathesis reads the app's own OpenAPI document (GET /docs, through WSGI:
no network) and, for every operation in it, generates requests from the
schema: valid ones, and invalid ones (wrong types, out-of-range values,
missing or extra fields, NUL and other odd characters). Each request is sent
four times: with a valid all-scopes token, with none, with a bad one, and
with the user's password (HTTP Basic). Path parameters and form/query fields
are sometimes replaced by values that exist (users, a photo, its shortcode, a
comment, a location, a tag, an API client), so the code behind the lookups is
reached too, not only the 404s.

Not fuzzed, because they are not in the OpenAPI document: /healthz and
/metrics (no parameters), and GET /media/<key>, which streams files from the
local media folder (test_media_api.py checks it refuses originals). The
upload's `photo` file and the profile's `profile_picture` are not described
in the document (flask-smorest documents the form fields only), so the fuzzer
reaches their form validation, not the image checks (test_imaging.py and
test_media_api.py cover those with real and broken files).
"""
from __future__ import annotations

import io

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NOT_SET
from schemathesis.generation import GenerationMode

from app import pipeline
from tests import images
from tests.support import ALL_SCOPES, PASSWORD, Shutter, basic_auth

BAD_TOKEN = "1.not-a-real-token"
# Bounded for CI on 2 cores: examples per operation and mode (valid, invalid),
# each sent four times (valid token, none, bad, HTTP Basic).
MAX_EXAMPLES = 25


@pytest.fixture
def fuzz_app(make_app):
    # Rate limits off: with them on, sign-up (20/hour) and the OAuth routes
    # (30/minute) would answer 429 to all but the first examples and hide the
    # code behind them. The 429 envelope has its own tests (test_accounts.py).
    return make_app(rate_limits_enabled=False)


@pytest.fixture
def known(fuzz_app) -> dict:
    """Accounts, a ready photo, a comment, a location and a tag that exist;
    the fuzzer's token belongs to `fuzzer`."""
    shutter = Shutter(fuzz_app.test_client())
    me = shutter.account("fuzzer")
    friend = shutter.account("friend")
    hidden = shutter.account("hidden", private=True)
    response = shutter.post("/v1/media/upload", friend, files={"photo": (io.BytesIO(images.jpeg(320, 240)), "a.jpg")},
                            caption="#sunset over @fuzzer", lat="48.85", lng="2.29", location_name="Paris")
    assert response.status_code == 202, response.get_data(as_text=True)
    media = response.json["data"]
    services = fuzz_app.extensions["shutter"]
    photo_id = int(media["id"].split("_")[0])
    with services.db.session() as session:
        assert pipeline.process_photo(session, services.storage, photo_id)
        assert pipeline.publish_photo(session, services.celery, photo_id)
    comment = shutter.post(f"/v1/media/{media['id']}/comments", friend, text="nice #sunset")
    assert comment.status_code == 200, comment.json
    media = shutter.get(f"/v1/media/{media['id']}", friend).json["data"]
    client = shutter.app_client()
    return {
        "token": me.token,
        "basic": basic_auth("fuzzer", PASSWORD),
        # form and query fields: the OAuth routes need a real client to get past its check
        "fields": {
            "client_id": [client["client_id"]], "client_secret": [client["client_secret"]],
            "redirect_uri": [client["redirect_uri"]], "username": ["fuzzer"], "password": [PASSWORD],
            "scope": [ALL_SCOPES],
        },
        "path": {
            "user_id": ["self", me.id, friend.id, hidden.id],
            "media_id": [media["id"], str(photo_id)],
            "comment_id": [comment.json["data"]["id"]],
            "location_id": [media["location"]["id"]],
            "code": [media["link"].rstrip("/").rsplit("/", 1)[-1]],
            "name": ["sunset"],
        },
    }


@pytest.fixture
def api_schema(fuzz_app, known):
    """The app's own OpenAPI document, loaded through WSGI: requests go to fuzz_app."""
    schema = schemathesis.openapi.from_wsgi("/docs", fuzz_app)

    def sometimes_real(generated, real: dict):
        # The generated values, or ones that exist: each alone, then all together.
        if not isinstance(generated, dict):
            return st.just(generated)
        real = {name: values for name, values in real.items() if name in generated}
        choices = [generated]
        choices += [{**generated, name: value} for name, values in real.items() for value in values]
        if real:
            choices.append({**generated, **{name: values[0] for name, values in real.items()}})
        return st.sampled_from(choices)

    @schema.hook
    def flatmap_path_parameters(_context, path_parameters):
        return sometimes_real(path_parameters, known["path"])

    @schema.hook
    def flatmap_query(_context, query):
        return sometimes_real(query, known["fields"])

    @schema.hook
    def flatmap_body(_context, body):
        return sometimes_real(body, known["fields"])

    return schema


def assert_envelope_or_success(response, what: str) -> None:
    body = response.content.decode("utf-8", "replace")
    assert response.status_code < 500, f"{what}: {response.status_code} {body[:500]}"
    assert "Traceback" not in body, f"{what}: a traceback in the body"
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.split(";")[0].strip() == "application/json", f"{what}: {content_type!r} {body[:500]}"
    envelope = response.json()
    assert isinstance(envelope, dict) and isinstance(envelope.get("meta"), dict), f"{what}: {body[:500]}"
    meta = envelope["meta"]
    assert meta.get("code") == response.status_code, f"{what}: meta {meta}"
    assert isinstance(meta.get("error_type"), str) and meta["error_type"], f"{what}: meta {meta}"
    assert isinstance(meta.get("error_message"), str) and meta["error_message"], f"{what}: meta {meta}"


def test_every_endpoint_answers_bad_input_with_the_envelope(api_schema, known, subtests):
    # schemathesis.pytest.from_fixture() would run this per operation, but its
    # wrapper reads Function._nodeid, which pytest 9 no longer has; the
    # documented APIOperation.as_strategy() with @given does the same here.
    tokens = (("valid token", {"Authorization": f"Bearer {known['token']}"}),
              ("no token", {}),
              ("bad token", {"Authorization": f"Bearer {BAD_TOKEN}"}),
              # /v1/clients and /oauth/authorize take the user's password instead
              ("basic auth", known["basic"]))
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # Blocks and deletions last: earlier operations then still reach the photo and the users.
    operations.sort(key=lambda operation: operation.label in {
        "POST /v1/users/{user_id}/relationship", "DELETE /v1/media/{media_id}"})
    assert len(operations) >= 30, [operation.label for operation in operations]
    for operation in operations:
        # An operation whose only inputs are path strings has nothing invalid to send.
        modes = [GenerationMode.POSITIVE] + [GenerationMode.NEGATIVE] * bool(len(operation.query) or operation.body)
        for mode in modes:
            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case):
                for how, headers in tokens:
                    response = case.call(headers=headers)
                    body = "" if case.body is NOT_SET else f" body={case.body!r}"
                    assert_envelope_or_success(
                        response, f"{case.method} {case.formatted_path} query={case.query!r}{body} ({how})")

            with subtests.test(operation=operation.label, mode=mode.value):
                check()
