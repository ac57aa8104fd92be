"""The OpenAPI document (GET /docs) describes authentication, the multipart
file fields and the responses, and what it says is what the routes do: each
declaration is checked against a request to the route it documents."""
from __future__ import annotations

import io
import re

import pytest

from app.accounts.auth import SCOPES
from tests import images
from tests.support import PASSWORD, assert_error, basic_auth

ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"
TOKEN_SCHEMES = {"oauth2", "accessToken", "bearerAuth"}

# What each operation takes, from API.md and the routes: no credentials, the user's
# password (HTTP Basic), or an access token with these scopes besides basic.
NO_AUTH = {("POST", "/v1/users"), ("POST", "/oauth/access_token"), ("POST", "/oauth/revoke"),
           # the user's browser back from Twitter or Facebook: the flow's single-use state says whose it is
           ("GET", "/v1/users/self/linked/{network}/callback")}
BASIC = {("POST", "/v1/clients"), ("GET", "/oauth/authorize")}
# The API client's client_id and client_secret (real-time subscriptions, as in v1).
CLIENT = {("POST", "/v1/subscriptions"), ("GET", "/v1/subscriptions"), ("DELETE", "/v1/subscriptions")}
SCOPED = {
    ("POST", "/v1/users/{user_id}/relationship"): "relationships",
    ("POST", "/v1/media/{media_id}/likes"): "likes",
    ("DELETE", "/v1/media/{media_id}/likes"): "likes",
    ("POST", "/v1/media/{media_id}/comments"): "comments",
    ("DELETE", "/v1/media/{media_id}/comments/{comment_id}"): "comments",
    ("POST", "/v1/media/upload"): "publish",
    ("DELETE", "/v1/media/{media_id}"): "publish",
    ("POST", "/v1/users/self"): "publish",
    ("GET", "/v1/users/self/linked/{network}/connect"): "publish",
    ("DELETE", "/v1/users/self/linked/{network}"): "publish",
}


@pytest.fixture
def doc(client) -> dict:
    response = client.get("/docs")
    assert response.status_code == 200
    return response.json


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                yield method.upper(), path, operation


def operation(doc: dict, method: str, path: str) -> dict:
    return doc["paths"][path][method.lower()]


def resolve(doc: dict, obj: dict) -> dict:
    while "$ref" in obj:
        node = doc
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def concrete(path: str) -> str:
    """A path to call: every path parameter "1" (auth is checked before any lookup)."""
    return re.sub(r"\{[^}]+\}", "1", path)


def file_fields(doc: dict, op: dict) -> tuple[dict, dict]:
    """The multipart/form-data schema of an operation, and its binary (file) properties."""
    schema = resolve(doc, op["requestBody"]["content"]["multipart/form-data"]["schema"])
    files = {name: prop for name, prop in schema["properties"].items()
             if prop.get("type") == "string" and prop.get("format") == "binary"}
    return schema, files


def test_security_schemes(doc):
    schemes = doc["components"]["securitySchemes"]
    assert set(schemes) == TOKEN_SCHEMES | {"basicAuth", "clientId", "clientSecret"}
    oauth2 = schemes["oauth2"]
    assert oauth2["type"] == "oauth2"
    assert oauth2["flows"]["password"]["tokenUrl"] == "/oauth/access_token"
    assert oauth2["flows"]["authorizationCode"]["authorizationUrl"] == "/oauth/authorize"
    assert oauth2["flows"]["implicit"]["authorizationUrl"] == "/oauth/authorize"
    for flow in oauth2["flows"].values():
        assert set(flow["scopes"]) == set(SCOPES)
    assert schemes["accessToken"] == {**schemes["accessToken"], "type": "apiKey", "in": "query", "name": "access_token"}
    assert schemes["bearerAuth"]["type"] == "http" and schemes["bearerAuth"]["scheme"] == "bearer"
    assert schemes["basicAuth"]["type"] == "http" and schemes["basicAuth"]["scheme"] == "basic"
    assert schemes["clientId"] == {**schemes["clientId"], "type": "apiKey", "in": "query", "name": "client_id"}
    assert schemes["clientSecret"] == {**schemes["clientSecret"], "type": "apiKey", "in": "query",
                                       "name": "client_secret"}
    assert "security" not in doc  # no global default: each operation says what it takes


def test_every_operation_declares_its_auth(doc):
    ops = list(operations(doc))
    assert len(ops) == 48
    labels = {(method, path) for method, path, _ in ops}
    assert NO_AUTH | BASIC | CLIENT | set(SCOPED) <= labels
    for method, path, op in ops:
        label = (method, path)
        assert "security" in op, label
        if label in NO_AUTH:
            assert op["security"] == [], label
        elif label in BASIC:
            assert op["security"] == [{"basicAuth": []}], label
        elif label in CLIENT:
            assert op["security"] == [{"clientId": [], "clientSecret": []}], label
        else:
            assert [name for requirement in op["security"] for name in requirement] == ["oauth2", "accessToken",
                                                                                        "bearerAuth"], label
            scopes = ["basic"] + ([SCOPED[label]] if label in SCOPED else [])
            assert op["security"][0] == {"oauth2": scopes}, label


def _call(client, method: str, path: str, **kwargs):
    return client.open(concrete(path), method=method, **kwargs)


def test_operations_declared_with_a_token_refuse_a_request_without_one(doc, client):
    for method, path, op in operations(doc):
        response = _call(client, method, path)
        missing = (response.status_code == 400 and response.is_json
                   and response.json["meta"].get("error_message") == "Missing access_token")
        declares_token = any(TOKEN_SCHEMES & set(requirement) for requirement in op["security"])
        assert missing == declares_token, (method, path, response.status_code, response.get_data(as_text=True))


def test_declared_scopes_are_the_ones_the_routes_require(doc, client, shutter):
    basic_only = shutter.account("basiconly", scope="basic")
    for method, path, op in operations(doc):
        if not any("oauth2" in requirement for requirement in op["security"]):
            continue
        response = _call(client, method, path, headers={"Authorization": f"Bearer {basic_only.token}"})
        refused = response.is_json and response.json["meta"].get("error_type") == "OAuthPermissionsException"
        declared = next(r["oauth2"] for r in op["security"] if "oauth2" in r)
        assert refused == (declared != ["basic"]), (method, path, declared, response.get_data(as_text=True))
        if refused:
            assert_error(response, 400, "OAuthPermissionsException")


def test_basic_auth_operations_take_the_users_password(doc, client, shutter):
    assert shutter.signup("owner").status_code == 201
    form = {"name": "app", "redirect_uri": "http://localhost:9999/callback"}
    assert_error(client.post("/v1/clients", data=form), 401, "OAuthParameterException")
    created = client.post("/v1/clients", data=form, headers=basic_auth("owner", PASSWORD))
    assert created.status_code == 201
    query = {"client_id": created.json["data"]["client_id"], "redirect_uri": form["redirect_uri"]}
    assert_error(client.get("/oauth/authorize", query_string=query), 401, "OAuthParameterException")
    redirected = client.get("/oauth/authorize", query_string=query, headers=basic_auth("owner", PASSWORD))
    assert redirected.status_code == 302 and "code=" in redirected.headers["Location"]
    # the statuses they answer are the documented successes
    assert "201" in operation(doc, "POST", "/v1/clients")["responses"]
    assert "302" in operation(doc, "GET", "/oauth/authorize")["responses"]
    assert "Location" in operation(doc, "GET", "/oauth/authorize")["responses"]["302"]["headers"]


def test_upload_declares_its_photo_file(doc, shutter):
    op = operation(doc, "POST", "/v1/media/upload")
    assert set(op["requestBody"]["content"]) == {"multipart/form-data"}  # a photo needs multipart
    schema, files = file_fields(doc, op)
    assert set(files) == {"photo"} and "photo" in schema["required"]
    assert {"caption", "lat", "lng", "location_name", "filter", "share_to"} <= set(schema["properties"])
    header = next(p for p in op["parameters"] if p["in"] == "header")
    assert header["name"] == "Idempotency-Key" and not header["required"]

    # the field the document names is the one the route reads, and it answers what it declares
    me = shutter.account("uploader")
    sent = shutter.post("/v1/media/upload", me, files={"photo": (io.BytesIO(images.jpeg(64, 48)), "a.jpg")},
                        caption="hello")
    assert sent.status_code == 202 and str(sent.status_code) in op["responses"], sent.get_data(as_text=True)
    without = shutter.post("/v1/media/upload", me, caption="hello")
    assert_error(without, 400, "APIInvalidParametersError")
    assert "photo" in without.json["meta"]["error_message"]
    not_an_image = shutter.post("/v1/media/upload", me, files={"photo": (io.BytesIO(images.gif()), "a.gif")})
    assert_error(not_an_image, 415, "APIUnsupportedMediaType")
    assert "415" in op["responses"]


def test_profile_declares_its_picture_file(doc, shutter):
    op = operation(doc, "POST", "/v1/users/self")
    content = op["requestBody"]["content"]
    # fields alone may be sent url-encoded; with the picture, multipart
    assert set(content) == {"application/x-www-form-urlencoded", "multipart/form-data"}
    schema, files = file_fields(doc, op)
    assert set(files) == {"profile_picture"} and "profile_picture" not in schema.get("required", [])
    assert {"full_name", "bio", "website", "is_private"} <= set(schema["properties"])

    me = shutter.account("portrait")
    before = shutter.get("/v1/users/self", me).json["data"]["profile_picture"]
    picture = {"profile_picture": (io.BytesIO(images.jpeg(200, 200)), "p.jpg")}
    edited = shutter.post("/v1/users/self", me, files=picture)
    assert edited.status_code == 200 and str(edited.status_code) in op["responses"]
    assert edited.json["data"]["profile_picture"] != before


def test_every_operation_documents_a_success_and_its_errors_in_the_envelope(doc):
    envelope = doc["components"]["schemas"]["ErrorEnvelope"]
    meta = resolve(doc, envelope["properties"]["meta"])
    assert envelope["required"] == ["meta"]
    assert set(meta["required"]) == {"code", "error_type", "error_message"}
    for method, path, op in operations(doc):
        codes = [code for code in op["responses"] if code != "default"]
        successes = [code for code in codes if code[0] in "23"]
        assert successes, (method, path)
        for code in successes:
            response = resolve(doc, op["responses"][code])
            assert response["description"] and response["description"] != "OK", (method, path, code)
        client_errors = [code for code in codes if code[0] == "4"]
        assert client_errors, (method, path)
        assert "422" not in codes, (method, path)  # webargs' status: the routes answer 400
        for code in client_errors + ["default"]:
            response = resolve(doc, op["responses"][code])
            assert response["content"]["application/json"]["schema"] == {"$ref": ENVELOPE_REF}, (method, path, code)


def test_success_statuses_are_the_ones_the_routes_answer(doc, client, shutter):
    signup = shutter.signup("newcomer")
    login = shutter.login("newcomer")
    me = login.json["access_token"]
    answered = {
        ("POST", "/v1/users"): signup.status_code,
        ("POST", "/oauth/access_token"): login.status_code,
        ("GET", "/v1/users/{user_id}"): client.get("/v1/users/self", query_string={"access_token": me}).status_code,
        ("GET", "/v1/users/self/feed"): client.get("/v1/users/self/feed", query_string={"access_token": me}).status_code,
    }
    for (method, path), status in answered.items():
        documented = [code for code in operation(doc, method, path)["responses"] if code[0] in "23"]
        assert documented == [str(status)], (method, path, documented, status)
    token = resolve(doc, operation(doc, "POST", "/oauth/access_token")["responses"]["200"])
    token_schema = resolve(doc, token["content"]["application/json"]["schema"])
    assert set(token_schema["properties"]) == set(login.json) == {"access_token", "user", "meta"}


def test_an_error_answer_matches_the_documented_envelope(doc, client):
    response = client.get("/v1/users/self")  # no token
    meta = resolve(doc, doc["components"]["schemas"]["ErrorEnvelope"]["properties"]["meta"])
    assert set(response.json) == {"meta"} and set(response.json["meta"]) == set(meta["properties"])
