"""Pytest plugin: local Twitter and Facebook for the sharing tests, over real HTTP on loopback.

Built on oauthlib's server side, so every signature, token, verifier and code is checked for
real: Twitter is an OAuth 1.0a provider (`oauthlib.oauth1.WebApplicationServer`: request token,
authorize, access token, and every v1.1 call verified as a protected resource), Facebook an
OAuth 2 one (`oauthlib.oauth2.WebApplicationServer`: the dialog, the code exchange, bearer
tokens on every Graph call). Each records what was posted (`posts`), and can be told to

    provider.fault("statuses/update", status=429, headers={...})   # answer this, do nothing
    provider.fault("me/photos", status=503, after=True)            # do it, then answer 503
    provider.fault("statuses/update", hang=3)                      # do it, then hang 3 s
    provider.revoke(token)                                         # that token answers 401
    provider.deny_next = True                                      # the user says no

The user who "logs in" on the provider's page is `provider.user`. Fixtures: twitter_provider,
facebook_provider, and oauth_settings (the settings pointed at both). Registered in
tests/conftest.py. The OAuth 2 libraries refuse plain HTTP unless OAUTHLIB_INSECURE_TRANSPORT
is set: the fixtures set it for the test (and a Worker must get it in extra_env, INSECURE_ENV).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from oauthlib import oauth1, oauth2
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

INSECURE_ENV = {"OAUTHLIB_INSECURE_TRANSPORT": "1"}
TWITTER_KEY = "shutterconsumerkey"
TWITTER_SECRET = "twitter-consumer-secret-not-for-logs"
FACEBOOK_APP_ID = "424242"
FACEBOOK_SECRET = "facebook-app-secret-not-for-logs"


@dataclass
class Fault:
    status: int | None = None
    headers: dict = field(default_factory=dict)
    after: bool = False  # do the work, then answer `status`
    hang: float = 0.0  # do the work, then wait this long before answering


@dataclass
class Post:
    user_id: str
    text: str
    image: bytes
    id: str


class Provider:
    """A werkzeug server in a thread; subclasses route requests."""

    name = ""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[Post] = []
        self.faults: dict[str, list[Fault]] = {}
        self.revoked: set[str] = set()
        self.calls: list[str] = []  # endpoint names, in order
        self.deny_next = False
        self.ids = itertools.count(int(time.time() * 1000))
        self.server = make_server("127.0.0.1", 0, self.wsgi, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fault(self, endpoint: str, **kwargs) -> None:
        with self.lock:
            self.faults.setdefault(endpoint, []).append(Fault(**kwargs))

    def revoke(self, token: str) -> None:
        with self.lock:
            self.revoked.add(token)

    def next_id(self) -> str:
        return str(next(self.ids))

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self.lock:
            self.calls.append(endpoint)
            queue = self.faults.get(endpoint)
            return queue.pop(0) if queue else None

    def faulty(self, endpoint: str, work):
        """Run `work()` (a Response) under the endpoint's next fault, if any."""
        fault = self._take_fault(endpoint)
        if fault is not None and fault.status is not None and not fault.after:
            return Response(json.dumps({"errors": [{"message": "scripted"}]}), fault.status, fault.headers,
                            content_type="application/json")
        response = work()
        if fault is not None and fault.hang:
            time.sleep(fault.hang)
        if fault is not None and fault.status is not None:
            return Response(json.dumps({"errors": [{"message": "scripted"}]}), fault.status, fault.headers,
                            content_type="application/json")
        return response

    def wsgi(self, environ, start_response):
        request = Request(environ)
        try:
            response = self.route(request)
        except Exception as error:  # a bug here must show, not hang the client
            response = Response(f"provider error: {error!r}", 500)
        return response(environ, start_response)

    def route(self, request: Request) -> Response:
        raise NotImplementedError

    @staticmethod
    def oauth_headers(request: Request) -> dict:
        return {name: value for name, value in request.headers.items()
                if name.lower() in ("authorization", "content-type")}

    @staticmethod
    def answer(headers, body, status) -> Response:
        return Response(body or "", status, headers or {})

    @staticmethod
    def as_json(data, status: int = 200) -> Response:
        return Response(json.dumps(data), status, content_type="application/json")


# -- Twitter: OAuth 1.0a ----------------------------------------------------------------
class TwitterValidator(oauth1.RequestValidator):
    enforce_ssl = False
    client_key_length = request_token_length = access_token_length = nonce_length = verifier_length = (3, 100)
    dummy_client = "dummyclientkey"
    dummy_request_token = "dummyrequesttoken"
    dummy_access_token = "dummyaccesstoken"

    def __init__(self, provider: "TwitterProvider") -> None:
        super().__init__()
        self.provider = provider
        self.request_tokens: dict[str, dict] = {}
        self.access_tokens: dict[str, dict] = {}
        self.nonces: set[tuple] = set()

    @property
    def realms(self):
        return []

    def validate_client_key(self, client_key, request):
        return client_key == TWITTER_KEY

    def get_client_secret(self, client_key, request):
        return TWITTER_SECRET if client_key == TWITTER_KEY else "dummysecret"

    def validate_timestamp_and_nonce(self, client_key, timestamp, nonce, request, request_token=None,
                                     access_token=None):
        key = (client_key, timestamp, nonce, request_token, access_token)
        if key in self.nonces:  # a replayed request
            return False
        self.nonces.add(key)
        return True

    def validate_requested_realms(self, client_key, realms, request):
        return True

    def get_default_realms(self, client_key, request):
        return []

    def validate_redirect_uri(self, client_key, redirect_uri, request):
        return redirect_uri.startswith("http")

    def save_request_token(self, token, request):
        self.request_tokens[token["oauth_token"]] = {"secret": token["oauth_token_secret"],
                                                     "client": request.client_key,
                                                     "callback": request.redirect_uri}

    def get_request_token_secret(self, client_key, token, request):
        entry = self.request_tokens.get(token)
        return entry["secret"] if entry else "dummysecret"

    def validate_request_token(self, client_key, token, request):
        entry = self.request_tokens.get(token)
        return entry is not None and entry["client"] == client_key

    def verify_request_token(self, token, request):
        return token in self.request_tokens

    def get_realms(self, token, request):
        return []

    def verify_realms(self, token, realms, request):
        return True

    def validate_realms(self, client_key, token, request, uri=None, realms=None):
        return True

    def get_redirect_uri(self, token, request):
        return self.request_tokens[token]["callback"]

    def save_verifier(self, token, verifier, request):
        entry = self.request_tokens[token]
        entry["verifier"] = verifier["oauth_verifier"]
        entry["user"] = dict(self.provider.user)

    def validate_verifier(self, client_key, token, verifier, request):
        entry = self.request_tokens.get(token)
        return entry is not None and entry.get("verifier") == verifier

    def invalidate_request_token(self, client_key, request_token, request):
        self.request_tokens.pop(request_token, None)

    def save_access_token(self, token, request):
        user = self.request_tokens[request.resource_owner_key]["user"]
        token.update(user)  # Twitter answers user_id and screen_name with the token
        self.access_tokens[token["oauth_token"]] = {"secret": token["oauth_token_secret"],
                                                    "client": request.client_key, **user}

    def get_access_token_secret(self, client_key, token, request):
        entry = self.access_tokens.get(token)
        return entry["secret"] if entry else "dummysecret"

    def validate_access_token(self, client_key, token, request):
        entry = self.access_tokens.get(token)
        return entry is not None and entry["client"] == client_key and token not in self.provider.revoked


class TwitterProvider(Provider):
    name = "twitter"

    def __init__(self) -> None:
        self.user = {"user_id": "783214", "screen_name": "alice_tw"}
        self.validator = TwitterValidator(self)
        self.oauth = oauth1.WebApplicationServer(self.validator)
        self.media: dict[str, bytes] = {}
        super().__init__()

    def access_token_of(self, user_id: str) -> tuple[str, str]:
        for token, entry in self.validator.access_tokens.items():
            if entry["user_id"] == user_id:
                return token, entry["secret"]
        raise KeyError(user_id)

    def route(self, request: Request) -> Response:
        path = request.path
        body = request.get_data(as_text=True) if request.mimetype == "application/x-www-form-urlencoded" else ""
        headers = self.oauth_headers(request)
        if path == "/oauth/request_token":
            return self.answer(*self.oauth.create_request_token_response(request.url, request.method, body, headers))
        if path == "/oauth/authorize":  # the user's browser on Twitter's page: they approve (or not)
            token = request.args.get("oauth_token", "")
            if self.deny_next:
                self.deny_next = False
                callback = self.validator.request_tokens[token]["callback"]
                separator = "&" if "?" in callback else "?"
                return Response("", 302, {"Location": f"{callback}{separator}denied={token}"})
            return self.answer(*self.oauth.create_authorization_response(request.url, "GET", None, headers, realms=[]))
        if path == "/oauth/access_token":
            return self.answer(*self.oauth.create_access_token_response(request.url, request.method, body, headers))
        valid, oauth_request = self.oauth.validate_protected_resource_request(request.url, request.method, body,
                                                                             headers, realms=[])
        if not valid:
            return self.as_json({"errors": [{"code": 89, "message": "Invalid or expired token."}]}, 401)
        user = self.validator.access_tokens[oauth_request.resource_owner_key]
        endpoint = path.removeprefix("/1.1/").removesuffix(".json")
        if endpoint == "media/upload":
            return self.faulty(endpoint, lambda: self._upload(request))
        if endpoint == "statuses/update":
            return self.faulty(endpoint, lambda: self._update(request, user))
        if endpoint == "statuses/user_timeline":
            return self.faulty(endpoint, lambda: self._timeline(request, user))
        return self.as_json({"errors": [{"code": 34, "message": "Sorry, that page does not exist"}]}, 404)

    def _upload(self, request: Request) -> Response:
        media_id = self.next_id()
        with self.lock:
            self.media[media_id] = request.files["media"].read()
        return self.as_json({"media_id": int(media_id), "media_id_string": media_id})

    def _update(self, request: Request, user: dict) -> Response:
        text = request.form["status"]
        image = self.media.get(request.form.get("media_ids", ""), b"")
        post = Post(user["user_id"], text, image, self.next_id())
        with self.lock:
            self.posts.append(post)
        return self.as_json(self._tweet(post))

    @staticmethod
    def _tweet(post: Post) -> dict:
        urls = [{"url": "https://t.co/x", "expanded_url": word} for word in post.text.split() if "://" in word]
        return {"id": int(post.id), "id_str": post.id, "text": post.text, "entities": {"urls": urls}}

    def _timeline(self, request: Request, user: dict) -> Response:
        count = int(request.args.get("count", 20))
        mine = [p for p in reversed(self.posts) if p.user_id == user["user_id"]][:count]
        return self.as_json([self._tweet(p) for p in mine])


# -- Facebook: OAuth 2 ---------------------------------------------------------------------
class FacebookValidator(oauth2.RequestValidator):
    def __init__(self, provider: "FacebookProvider") -> None:
        super().__init__()
        self.provider = provider
        self.codes: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}

    def validate_client_id(self, client_id, request, *args, **kwargs):
        return client_id == FACEBOOK_APP_ID

    def validate_redirect_uri(self, client_id, redirect_uri, request, *args, **kwargs):
        return redirect_uri.startswith("http")

    def get_default_redirect_uri(self, client_id, request, *args, **kwargs):
        return None

    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs):
        return True

    def get_default_scopes(self, client_id, request, *args, **kwargs):
        return ["public_profile"]

    def validate_response_type(self, client_id, response_type, client, request, *args, **kwargs):
        return response_type == "code"

    def save_authorization_code(self, client_id, code, request, *args, **kwargs):
        self.codes[code["code"]] = {"client_id": client_id, "redirect_uri": request.redirect_uri,
                                    "user": dict(self.provider.user), "scopes": request.scopes}

    def client_authentication_required(self, request, *args, **kwargs):
        return True

    def authenticate_client(self, request, *args, **kwargs):
        if request.client_id == FACEBOOK_APP_ID and request.client_secret == FACEBOOK_SECRET:
            request.client = SimpleNamespace(client_id=FACEBOOK_APP_ID)
            return True
        return False

    def authenticate_client_id(self, client_id, request, *args, **kwargs):
        return False

    def validate_code(self, client_id, code, client, request, *args, **kwargs):
        entry = self.codes.get(code)
        if entry is None or entry["client_id"] != client_id:
            return False
        request.user, request.scopes = entry["user"], entry["scopes"]
        return True

    def confirm_redirect_uri(self, client_id, code, redirect_uri, client, request, *args, **kwargs):
        entry = self.codes.get(code)
        return entry is not None and entry["redirect_uri"] == redirect_uri

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs):
        return grant_type == "authorization_code"

    def save_bearer_token(self, token, request, *args, **kwargs):
        self.tokens[token["access_token"]] = {"user": request.user}

    def invalidate_authorization_code(self, client_id, code, request, *args, **kwargs):
        self.codes.pop(code, None)

    def validate_bearer_token(self, token, scopes, request):
        entry = self.tokens.get(token)
        if entry is None or token in self.provider.revoked:
            return False
        request.user = entry["user"]
        return True

    def is_pkce_required(self, client_id, request):
        return False


class FacebookProvider(Provider):
    name = "facebook"

    def __init__(self) -> None:
        self.user = {"id": "100004242", "name": "Alice Liddell"}
        self.validator = FacebookValidator(self)
        self.oauth = oauth2.WebApplicationServer(self.validator)
        super().__init__()

    def access_token_of(self, user_id: str) -> str:
        return next(token for token, entry in self.validator.tokens.items() if entry["user"]["id"] == user_id)

    def route(self, request: Request) -> Response:
        path = request.path
        headers = self.oauth_headers(request)
        if path == "/dialog/oauth":  # the user's browser on Facebook's page
            if self.deny_next:
                self.deny_next = False
                redirect_uri = request.args["redirect_uri"]
                return Response("", 302, {"Location": f"{redirect_uri}?error=access_denied&state="
                                                      f"{request.args.get('state', '')}"})
            scopes, info = self.oauth.validate_authorization_request(request.url, "GET", None, headers)
            credentials = {k: v for k, v in info.items() if k != "request"}
            return self.answer(*self.oauth.create_authorization_response(request.url, "GET", None, headers,
                                                                         scopes=scopes, credentials=credentials))
        if path == "/oauth/access_token":
            return self.answer(*self.oauth.create_token_response(request.url, request.method,
                                                                 request.get_data(as_text=True), headers))
        valid, oauth_request = self.oauth.verify_request(request.url.split("?")[0], request.method, None,
                                                         {"Authorization": request.headers.get("Authorization", "")},
                                                         scopes=[])
        if not valid:  # Graph's answer to an expired or revoked token
            return self.as_json({"error": {"message": "Error validating access token: the user has not "
                                                      "authorized application", "type": "OAuthException",
                                           "code": 190}}, 400)
        user = oauth_request.user
        if path == "/me" and request.method == "GET":
            return self.as_json({"id": user["id"], "name": user["name"]})
        if path == "/me/photos" and request.method == "POST":
            return self.faulty("me/photos", lambda: self._photo(request, user))
        if path == "/me/photos" and request.method == "GET":
            return self.faulty("me/photos:read", lambda: self._photos(request, user))
        return self.as_json({"error": {"message": "Unknown path", "type": "GraphMethodException", "code": 100}},
                            404)

    def _photo(self, request: Request, user: dict) -> Response:
        post = Post(user["id"], request.form.get("message", ""), request.files["source"].read(), self.next_id())
        with self.lock:
            self.posts.append(post)
        return self.as_json({"id": post.id, "post_id": f"{user['id']}_{post.id}"})

    def _photos(self, request: Request, user: dict) -> Response:
        limit = int(request.args.get("limit", 25))
        mine = [p for p in reversed(self.posts) if p.user_id == user["id"]][:limit]
        return self.as_json({"data": [{"id": p.id, "name": p.text} for p in mine], "paging": {}})


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def twitter_provider(monkeypatch):
    for name, value in INSECURE_ENV.items():
        monkeypatch.setenv(name, value)
    provider = TwitterProvider()
    yield provider
    provider.stop()


@pytest.fixture
def facebook_provider(monkeypatch):
    for name, value in INSECURE_ENV.items():
        monkeypatch.setenv(name, value)
    provider = FacebookProvider()
    yield provider
    provider.stop()


def provider_settings(settings, twitter: TwitterProvider, facebook: FacebookProvider, **changes):
    """`settings` with both networks configured and pointed at the local providers."""
    return dataclasses.replace(
        settings,
        twitter_consumer_key=TWITTER_KEY, twitter_consumer_secret=TWITTER_SECRET,
        twitter_api_url=twitter.url, twitter_upload_url=twitter.url,
        twitter_request_token_url=f"{twitter.url}/oauth/request_token",
        twitter_authorize_url=f"{twitter.url}/oauth/authorize",
        twitter_access_token_url=f"{twitter.url}/oauth/access_token",
        facebook_app_id=FACEBOOK_APP_ID, facebook_app_secret=FACEBOOK_SECRET,
        facebook_graph_url=facebook.url, facebook_authorize_url=f"{facebook.url}/dialog/oauth",
        facebook_token_url=f"{facebook.url}/oauth/access_token",
        share_timeout_seconds=1.0, share_retry_backoff_seconds=1, share_retry_backoff_max_seconds=2,
        **changes,
    )


@pytest.fixture
def oauth_settings(settings, twitter_provider, facebook_provider):
    return provider_settings(settings, twitter_provider, facebook_provider)
