"""The composition root: every service, built from Settings, in one place.

Each is made on first use, so a process connects only to what it needs (a
worker's pool children connect after the fork). Domain code never looks a
service up: it is handed what it uses, here. Routes, tasks (which run in the
Flask app's context, app/worker.py) and the CLI reach the container through
`services`, the current app's.
"""
from __future__ import annotations

from functools import cached_property

import ssl

import httpx
import redis
from flask import current_app
from werkzeug.local import LocalProxy

from app.accounts.auth import PasswordService, TokenService
from app.accounts.presence import Presence
from app.config import Settings
from app.feeds.manager import FeedManager
from app.feeds.rendered import RenderedFeed
from app.media.profile_pictures import ProfilePictures
from app.media.reader import MediaReader
from app.media.serializers import Serializer
from app.media.storage import storage_from_settings
from app.platform.aftercommit import SERVICES
from app.platform.cache import cache_from_settings
from app.push.apns import ApnsProvider, ProviderToken
from app.push.service import PushService
from app.realtime.callbacks import AddressGuard, HttpCallbacks
from app.realtime.subscriptions import SubscriptionService
from app.reads.lists import WarmLists
from app.reads.profiles import WarmProfiles
from app.reads.social import WarmSocialLists
from app.reads.warm import WarmReads
from app.search.interface import SearchBackend
from app.search.redis_backend import RedisSearch
from app.search.service import SearchService
from app.search.solr_backend import SolrSearch
from app.sharing.crypto import TokenCipher
from app.sharing.linking import LinkedAccounts
from app.sharing.networks import networks_from_settings
from app.sharing.service import Sharing
from app.social.graph import SocialGraph
from app.worker import make_celery
from models import Database


class Services:
    def __init__(self, settings: Settings, flask_app=None) -> None:
        self.settings = settings
        self.flask_app = flask_app  # whose context the Celery app's tasks run in

    @cached_property
    def db(self) -> Database:
        # Its sessions carry this container, for the steps that follow their commits.
        return Database(self.settings.database_url, self.settings.database_replica_urls,
                        session_info={SERVICES: self})

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.settings.redis_url, decode_responses=True, socket_timeout=5, health_check_interval=30
        )

    @cached_property
    def storage(self):
        return storage_from_settings(self.settings)

    @cached_property
    def cache(self):
        return cache_from_settings(self.settings)

    @cached_property
    def serializer(self) -> Serializer:
        return Serializer(self.storage.url, self.settings.public_url)

    @cached_property
    def media(self) -> MediaReader:
        return MediaReader(self.cache, self.serializer)

    @cached_property
    def profile_pictures(self) -> ProfilePictures:
        return ProfilePictures(self.storage, self.settings.max_image_pixels)

    @cached_property
    def feeds(self) -> FeedManager:
        return FeedManager(self.redis, self.db, self.settings, self.media, celery=self.celery)

    @cached_property
    def rendered(self) -> RenderedFeed:
        return RenderedFeed(self.redis, self.feeds)

    @cached_property
    def graph(self) -> SocialGraph:
        return SocialGraph(self.redis, self.feeds.clocks)

    @cached_property
    def reads(self) -> WarmReads:
        return WarmReads(self.rendered, self.graph, self.feeds)

    @cached_property
    def lists(self) -> WarmLists:
        """The warm media lists (a user's, a tag's, a location's, liked, popular)."""
        return WarmLists(self.rendered, self.graph, self.feeds)

    @cached_property
    def profiles(self) -> WarmProfiles:
        return WarmProfiles(self.rendered, self.graph, self.feeds)

    @cached_property
    def social_lists(self) -> WarmSocialLists:
        return WarmSocialLists(self.rendered, self.graph, self.media)

    @cached_property
    def search_backend(self) -> SearchBackend:
        """SEARCH_BACKEND: `redis` (GEO sets in REDIS_URL's Redis) or `solr` (SOLR_URL, a core's URL)."""
        if self.settings.search_backend == "solr":
            if not self.settings.solr_url:
                raise ValueError("SEARCH_BACKEND=solr needs SOLR_URL (e.g. http://solr:8983/solr/shutter)")
            return SolrSearch(self.settings.solr_url)
        if self.settings.search_backend == "redis":
            return RedisSearch(self.redis)
        raise ValueError(f"SEARCH_BACKEND must be redis or solr, not {self.settings.search_backend!r}")

    @cached_property
    def search(self) -> SearchService:
        return SearchService(self.search_backend, self.db)

    @cached_property
    def passwords(self) -> PasswordService:
        s = self.settings
        return PasswordService(s.argon2_time_cost, s.argon2_memory_cost_kib, s.argon2_parallelism)

    @cached_property
    def tokens(self) -> TokenService:
        return TokenService(self.redis, self.settings.token_cache_seconds, presence=self.presence)

    @cached_property
    def presence(self) -> Presence:
        return Presence(self.feeds)

    @cached_property
    def callbacks(self) -> HttpCallbacks:
        """HTTP to subscribers' callbacks, never to an address SUBSCRIPTION_CALLBACK_ALLOWED_NETWORKS
        does not allow (app/realtime/callbacks.py)."""
        s = self.settings
        return HttpCallbacks(AddressGuard(s.subscription_callback_allowed_networks),
                             s.subscription_callback_timeout_seconds)

    @cached_property
    def subscriptions(self) -> SubscriptionService:
        s = self.settings
        return SubscriptionService(self.db, self.callbacks, self.celery, max_failures=s.subscription_max_failures,
                                   retry_backoff_seconds=s.subscription_retry_backoff_seconds,
                                   retry_backoff_max_seconds=s.subscription_retry_backoff_max_seconds)

    @cached_property
    def linked(self) -> LinkedAccounts:
        """Linked Twitter and Facebook accounts; tokens encrypted with LINKED_ACCOUNT_KEYS (app/sharing)."""
        s = self.settings
        return LinkedAccounts(self.db, self.redis, TokenCipher(s.linked_account_keys, s.secret_key),
                              networks_from_settings(s), s.public_url)

    @cached_property
    def sharing(self) -> Sharing:
        """Posting ready photos to linked accounts; `sharing.enabled(network)` says whether it is on."""
        s = self.settings
        return Sharing(self.db, self.storage, self.linked, self.serializer.photo_link,
                       retry_backoff_seconds=s.share_retry_backoff_seconds,
                       retry_backoff_max_seconds=s.share_retry_backoff_max_seconds)

    @cached_property
    def apns_http(self) -> httpx.Client:
        """The process's one HTTP/2 client to APNs: its connection carries every push as a stream."""
        s = self.settings
        context = ssl.create_default_context(cafile=s.apns_ca_file or None)  # empty: the system's CAs
        # Apple asks providers to keep the connection open across pushes: an idle one stays an hour
        # (httpx's default closes it after 5 s), and one APNs closed meanwhile is replaced on the next push.
        return httpx.Client(http2=True, verify=context, timeout=httpx.Timeout(10.0, connect=5.0),
                            limits=httpx.Limits(keepalive_expiry=3600))

    @cached_property
    def apns(self) -> ApnsProvider | None:
        """APNs' provider API with a JWT from APNS_KEY_FILE; None (push off) unless every APNS_* is set."""
        s = self.settings
        if not s.push_configured:
            return None
        with open(s.apns_key_file) as key_file:
            token = ProviderToken(s.apns_key_id, s.apns_team_id, key_file.read())
        return ApnsProvider(self.apns_http, token, {"production": s.apns_host, "sandbox": s.apns_sandbox_host},
                            s.apns_port)

    @cached_property
    def push(self) -> PushService:
        s = self.settings
        return PushService(self.db, self.redis, self.celery, self.apns, topic=s.apns_topic,
                           expiration_seconds=s.apns_expiration_seconds,
                           retry_backoff_seconds=s.apns_retry_backoff_seconds,
                           retry_backoff_max_seconds=s.apns_retry_backoff_max_seconds,
                           max_retries=s.apns_max_retries)

    @cached_property
    def celery(self):
        """The Celery app on this settings' broker: publishes, and in a worker consumes."""
        return make_celery(self.settings, self.flask_app)

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.dispose()
        if "redis" in self.__dict__:
            self.redis.close()
        if "callbacks" in self.__dict__:
            self.callbacks.close()
        if "apns_http" in self.__dict__:
            self.apns_http.close()


services: Services = LocalProxy(lambda: current_app.extensions["shutter"])  # type: ignore[assignment]
