"""Twitter and Facebook over HTTP, through requests-oauthlib: the OAuth flows, a photo post,
and the read that finds a post again. Nothing here touches the database.

Every call has a timeout, and every failure is one of a few named kinds, so the caller
knows whether a post may have happened:

    Revoked      401 (Facebook: error code 190 too): the user took the app's access away
    RateLimited  429; `retry_after` from x-rate-limit-reset (Twitter) or Retry-After
    Unavailable  a 5xx or a connection failure on a read, or before a write was sent:
                 nothing was posted
    NoAnswer     a write was sent and no clear answer came back (read timeout, a broken
                 connection, a 5xx): it may have been posted, look before posting again
    Refused      any other 4xx: asking again would not help
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import requests
from oauthlib.oauth2 import OAuth2Error
from requests_oauthlib import OAuth1Session, OAuth2Session
from requests_oauthlib.oauth1_session import TokenRequestDenied
from urllib3.exceptions import NewConnectionError

from app.config import Settings

TIMELINE_COUNT = 50  # recent posts read when looking for a post whose outcome is unknown
TWEET_LENGTH = 280
TCO_LENGTH = 23  # Twitter counts every link as this long


class NetworkError(Exception):
    retry_after: float | None = None


class Revoked(NetworkError):
    pass


class RateLimited(NetworkError):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(NetworkError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NoAnswer(NetworkError):
    pass


class Refused(NetworkError):
    pass


class Denied(NetworkError):
    """The user said no on the provider's page (or it sent back something unusable)."""


@dataclass(frozen=True)
class Tokens:
    access_token: str
    access_token_secret: str = ""


@dataclass(frozen=True)
class Identity:
    """Who linked: what the access-token exchange and the profile read say."""

    remote_user_id: str
    screen_name: str
    tokens: Tokens


def retry_after(response: requests.Response) -> float | None:
    """Seconds until the provider takes requests again, from its headers (None: not said)."""
    reset = response.headers.get("x-rate-limit-reset")  # Twitter: the epoch second of the reset
    if reset and reset.strip().isdigit():
        return max(0.0, int(reset) - time.time())
    after = (response.headers.get("Retry-After") or "").strip()
    if after.isdigit():
        return float(after)
    if after:
        try:
            return max(0.0, parsedate_to_datetime(after).timestamp() - time.time())
        except (TypeError, ValueError):
            return None
    return None


def _error_code(response: requests.Response) -> int | None:
    """Graph's {"error": {"code": …}}, when the body is one."""
    try:
        error = response.json().get("error")
    except ValueError:
        return None
    return error.get("code") if isinstance(error, dict) else None


class Network:
    """What a linked-account network does; Twitter and Facebook below."""

    name: str
    needs_state_in_callback = False  # OAuth 1.0a has no `state`: it rides in the callback URL

    def __init__(self, settings: Settings, key: str, secret: str) -> None:
        self.timeout = settings.share_timeout_seconds
        self.key = key  # the app's: Twitter's consumer key, Facebook's app id
        self.secret = secret

    @property
    def enabled(self) -> bool:
        """On when the app's key and secret are both set."""
        return bool(self.key and self.secret)

    def call(self, session: requests.Session, method: str, url: str, *, write: bool = False,
             **kwargs) -> requests.Response:
        """One request with the timeout, its failure named (see the module's docstring)."""
        try:
            response = session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.ConnectTimeout as error:  # never connected: nothing was sent
            raise Unavailable(f"{self.name}: connect timeout") from error
        except (requests.ConnectionError, requests.Timeout) as error:
            reason = getattr(error.args[0], "reason", None) if error.args else None  # urllib3's MaxRetryError
            if write and not isinstance(reason, NewConnectionError):  # refused: never sent
                raise NoAnswer(f"{self.name}: {type(error).__name__} after sending") from error
            raise Unavailable(f"{self.name}: {type(error).__name__}") from error
        status = response.status_code
        if status == 401 or (status in (400, 403) and _error_code(response) == 190):
            raise Revoked(f"{self.name}: access revoked ({status})")
        if status == 429:
            raise RateLimited(f"{self.name}: rate limited", retry_after(response))
        if status >= 500:
            if write:
                raise NoAnswer(f"{self.name}: HTTP {status} to a write")
            raise Unavailable(f"{self.name}: HTTP {status}", retry_after(response))
        if status >= 400:
            raise Refused(f"{self.name}: HTTP {status}")
        return response

    # What each network implements:
    def start(self, callback_url: str, state: str) -> tuple[str, dict]:
        """(the authorize URL to send the user to, what the callback will need)."""
        raise NotImplementedError

    def finish(self, callback_url: str, flow: dict, params: dict) -> Identity:
        raise NotImplementedError

    def post(self, tokens: Tokens, image: bytes, caption: str | None, link: str) -> str:
        """Post the photo; its remote id."""
        raise NotImplementedError

    def find(self, tokens: Tokens, link: str) -> str | None:
        """The remote id of a recent post of the user that carries `link`, if there is one."""
        raise NotImplementedError


class Twitter(Network):
    name = "twitter"
    needs_state_in_callback = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.twitter_consumer_key, settings.twitter_consumer_secret)
        self.api = settings.twitter_api_url.rstrip("/")
        self.upload = settings.twitter_upload_url.rstrip("/")
        self.request_token_url = settings.twitter_request_token_url
        self.authorize_url = settings.twitter_authorize_url
        self.access_token_url = settings.twitter_access_token_url

    def _session(self, tokens: Tokens | None = None, **kwargs) -> OAuth1Session:
        if tokens is not None:
            kwargs.update(resource_owner_key=tokens.access_token, resource_owner_secret=tokens.access_token_secret)
        return OAuth1Session(self.key, client_secret=self.secret, **kwargs)

    def start(self, callback_url: str, state: str) -> tuple[str, dict]:
        with self._session(callback_uri=callback_url) as oauth:
            try:
                token = oauth.fetch_request_token(self.request_token_url, timeout=self.timeout)
            except (TokenRequestDenied, ValueError) as error:
                raise Unavailable(f"twitter: request token refused ({type(error).__name__})") from error
            except requests.RequestException as error:
                raise Unavailable(f"twitter: request token: {type(error).__name__}") from error
            url = oauth.authorization_url(self.authorize_url)
        return url, {"request_token": token["oauth_token"], "request_token_secret": token["oauth_token_secret"]}

    def finish(self, callback_url: str, flow: dict, params: dict) -> Identity:
        if params.get("denied") or not params.get("oauth_verifier"):
            raise Denied("The authorization was denied on Twitter.")
        if params.get("oauth_token") != flow["request_token"]:
            raise Denied("The callback's oauth_token is not the one this flow asked for.")
        with self._session(resource_owner_key=flow["request_token"],
                           resource_owner_secret=flow["request_token_secret"],
                           verifier=params["oauth_verifier"]) as oauth:
            try:
                token = oauth.fetch_access_token(self.access_token_url, timeout=self.timeout)
            except (TokenRequestDenied, ValueError) as error:
                raise Denied(f"Twitter refused the access token ({type(error).__name__}).") from error
            except requests.RequestException as error:
                raise Unavailable(f"twitter: access token: {type(error).__name__}") from error
        return Identity(str(token.get("user_id", "")), token.get("screen_name", ""),
                        Tokens(token["oauth_token"], token["oauth_token_secret"]))

    @staticmethod
    def status_text(caption: str | None, link: str) -> str:
        room = TWEET_LENGTH - TCO_LENGTH - 1
        text = (caption or "").strip()
        if len(text) > room:
            text = text[: room - 1].rstrip() + "…"
        return f"{text} {link}" if text else link

    def post(self, tokens: Tokens, image: bytes, caption: str | None, link: str) -> str:
        with self._session(tokens) as oauth:
            # An upload that is never used by a status is harmless (Twitter drops it): not the write.
            media = self.call(oauth, "POST", f"{self.upload}/1.1/media/upload.json",
                              files={"media": ("photo.jpg", image, "image/jpeg")}).json()
            status = self.call(oauth, "POST", f"{self.api}/1.1/statuses/update.json", write=True,
                               data={"status": self.status_text(caption, link),
                                     "media_ids": media["media_id_string"]}).json()
        return status["id_str"]

    def find(self, tokens: Tokens, link: str) -> str | None:
        with self._session(tokens) as oauth:
            tweets = self.call(oauth, "GET", f"{self.api}/1.1/statuses/user_timeline.json",
                               params={"count": TIMELINE_COUNT, "trim_user": "true"}).json()
        for tweet in tweets:
            urls = [u.get("expanded_url") for u in (tweet.get("entities") or {}).get("urls", [])]
            if link in urls or link in tweet.get("text", ""):
                return tweet["id_str"]
        return None


class Facebook(Network):
    name = "facebook"
    SCOPE = ["publish_actions"]  # 2011's permission to post photos for the user

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.facebook_app_id, settings.facebook_app_secret)
        self.graph = settings.facebook_graph_url.rstrip("/")
        self.authorize_url = settings.facebook_authorize_url
        self.token_url = settings.facebook_token_url

    def _session(self, tokens: Tokens | None = None, **kwargs) -> OAuth2Session:
        token = {"access_token": tokens.access_token, "token_type": "Bearer"} if tokens else None
        return OAuth2Session(self.key, token=token, **kwargs)

    def start(self, callback_url: str, state: str) -> tuple[str, dict]:
        with self._session(redirect_uri=callback_url, scope=self.SCOPE, state=state) as oauth:
            url, _state = oauth.authorization_url(self.authorize_url)
        return url, {}

    def finish(self, callback_url: str, flow: dict, params: dict) -> Identity:
        if params.get("error") or not params.get("code"):
            raise Denied("The authorization was denied on Facebook.")
        with self._session(redirect_uri=callback_url) as oauth:
            try:
                token = oauth.fetch_token(self.token_url, code=params["code"], client_secret=self.secret,
                                          include_client_id=True, timeout=self.timeout)
            except OAuth2Error as error:
                raise Denied(f"Facebook refused the code ({error.error}).") from error
            except requests.RequestException as error:
                raise Unavailable(f"facebook: token: {type(error).__name__}") from error
            try:
                me = self.call(oauth, "GET", f"{self.graph}/me", params={"fields": "id,name"}).json()
            except Refused as error:
                raise Denied("Facebook did not say who linked.") from error
        return Identity(str(me["id"]), me.get("name", ""), Tokens(token["access_token"]))

    @staticmethod
    def message(caption: str | None, link: str) -> str:
        text = (caption or "").strip()
        return f"{text}\n\n{link}" if text else link

    def post(self, tokens: Tokens, image: bytes, caption: str | None, link: str) -> str:
        with self._session(tokens) as oauth:
            photo = self.call(oauth, "POST", f"{self.graph}/me/photos", write=True,
                              data={"message": self.message(caption, link)},
                              files={"source": ("photo.jpg", image, "image/jpeg")}).json()
        return str(photo["id"])

    def find(self, tokens: Tokens, link: str) -> str | None:
        with self._session(tokens) as oauth:
            photos = self.call(oauth, "GET", f"{self.graph}/me/photos",
                               params={"type": "uploaded", "fields": "id,name", "limit": TIMELINE_COUNT}).json()
        for photo in photos.get("data", []):
            if link in (photo.get("name") or ""):
                return str(photo["id"])
        return None


NETWORKS = ("twitter", "facebook")


def networks_from_settings(settings: Settings) -> dict[str, Network]:
    return {"twitter": Twitter(settings), "facebook": Facebook(settings)}
