"""Settings, read once from the environment.

Every knob of Shutter is an environment variable; the defaults are the
embedded stack (SQLite, a local media folder, an embedded redis-server that
`make run` starts and announces through REDIS_URL). `.env.example` lists
them all.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


def _list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    # Relational data
    database_url: str = f"sqlite:///{VAR / 'shutter.db'}"
    database_replica_urls: list[str] = field(default_factory=list)
    # Feeds, activity, token lookups, rate limits; broker defaults to it too
    redis_url: str = "redis://127.0.0.1:6379/0"
    celery_broker_url: str = ""
    # Photos
    storage_backend: str = "local"  # local | s3
    media_root: str = str(VAR / "media")
    media_url: str = "/media"
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    cdn_url: str = ""
    max_upload_bytes: int = 30 * 1024 * 1024
    max_image_pixels: int = 50_000_000
    # Search
    search_backend: str = "redis"  # redis | solr
    solr_url: str = ""
    # Cache
    memcached_servers: list[str] = field(default_factory=list)
    # Push (APNs provider API, token auth)
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_key_file: str = ""
    apns_topic: str = ""
    apns_host: str = "api.push.apple.com"  # production devices; a host name, not a URL
    apns_sandbox_host: str = "api.sandbox.push.apple.com"  # devices registered as sandbox
    apns_port: int = 443
    apns_ca_file: str = ""  # empty: the system's CAs
    apns_expiration_seconds: int = 24 * 3600  # apns-expiration: Apple keeps an undelivered push this long
    apns_retry_backoff_seconds: float = 2.0  # 429 and 5xx: exponential backoff with full jitter
    apns_retry_backoff_max_seconds: float = 300.0
    apns_max_retries: int = 8
    # Share (app/sharing): a network is on when its app's key and secret are both set
    twitter_consumer_key: str = ""
    twitter_consumer_secret: str = ""
    twitter_api_url: str = "https://api.twitter.com"  # v1.1 REST: statuses/update, user_timeline
    twitter_upload_url: str = "https://upload.twitter.com"  # v1.1 media/upload
    twitter_request_token_url: str = "https://api.twitter.com/oauth/request_token"
    twitter_authorize_url: str = "https://api.twitter.com/oauth/authorize"
    twitter_access_token_url: str = "https://api.twitter.com/oauth/access_token"
    facebook_app_id: str = ""
    facebook_app_secret: str = ""
    facebook_graph_url: str = "https://graph.facebook.com"  # /me, /me/photos
    facebook_authorize_url: str = "https://www.facebook.com/dialog/oauth"
    facebook_token_url: str = "https://graph.facebook.com/oauth/access_token"
    # Fernet keys (comma-separated, newest first) that encrypt linked accounts' tokens;
    # empty: one derived from SECRET_KEY (fine for `make run`, production sets its own).
    linked_account_keys: list[str] = field(default_factory=list)
    share_timeout_seconds: float = 10.0  # connect and read, per request to Twitter or Facebook
    share_retry_backoff_seconds: int = 5  # a failed share's retries: exponential, full jitter
    share_retry_backoff_max_seconds: int = 900
    # Operations
    sentry_dsn: str = ""
    # A Celery worker's own /metrics (0: none; then it shares the API's PROMETHEUS_MULTIPROC_DIR)
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    log_format: str = "text"  # text | json (one JSON object a line)
    # /healthz?deep=1 (and /readyz) fail past these: messages waiting in one queue,
    # and the age of the oldest outbox row not yet published
    health_max_queue_depth: int = 1000
    health_max_outbox_age_seconds: int = 300
    # the cheap /healthz answers from component states at most this old
    health_cache_seconds: int = 10
    secret_key: str = "dev-only-secret-change-me"
    public_url: str = "http://127.0.0.1:8000"
    rate_limits_enabled: bool = True
    signup_rate_limit: str = "20/hour"
    login_rate_limit: str = "30/minute"
    # Proxies in front whose X-Forwarded-For is believed: 0 = none (REMOTE_ADDR is the client), 1 = nginx or an LB
    trusted_proxy_hops: int = 0
    token_cache_seconds: int = 3600
    # argon2id cost: argon2-cffi's defaults (RFC 9106's low-memory profile)
    argon2_time_cost: int = 3
    argon2_memory_cost_kib: int = 65536
    argon2_parallelism: int = 4
    celebrity_threshold: int = 10_000
    feed_size: int = 800
    # Growth: feeds of users away this long expire (rebuilt when they return);
    # delivered outbox rows and spent authorization codes are purged after these.
    feed_inactive_days: int = 30
    outbox_retention_hours: int = 7 * 24
    auth_code_retention_hours: int = 24
    fanout_chunk: int = 2000  # followers per fan-out task and per Redis round trip
    # The media tasks' time limits: past the soft one a run is retried (a slow
    # S3), past the hard one its worker child is killed (counts as an attempt).
    photo_soft_time_limit_seconds: int = 240
    photo_time_limit_seconds: int = 300
    # Real-time subscriptions (app/realtime): callbacks never reach loopback, private,
    # link-local, multicast or reserved addresses unless these CIDRs allow them (empty: none).
    subscription_callback_allowed_networks: list[str] = field(default_factory=list)
    subscription_callback_timeout_seconds: float = 5.0  # connect and read, per request to a callback
    subscription_max_failures: int = 10  # consecutive failed deliveries before a subscription is disabled
    subscription_retry_backoff_seconds: int = 2  # a failed delivery's retries: exponential, full jitter
    subscription_retry_backoff_max_seconds: int = 600

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def push_configured(self) -> bool:
        """Push is on only with every APNs setting a provider token needs."""
        return bool(self.apns_key_id and self.apns_team_id and self.apns_key_file and self.apns_topic)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: os._Environ | dict | None = None) -> "Settings":
        env = os.environ if env is None else env
        d = cls()

        def get(name: str, default):
            return env.get(name) or default

        return cls(
            database_url=get("DATABASE_URL", d.database_url),
            database_replica_urls=_list(env.get("DATABASE_REPLICA_URLS")),
            redis_url=get("REDIS_URL", d.redis_url),
            celery_broker_url=get("CELERY_BROKER_URL", ""),
            storage_backend=get("STORAGE_BACKEND", d.storage_backend),
            media_root=get("MEDIA_ROOT", d.media_root),
            media_url=get("MEDIA_URL", d.media_url),
            s3_bucket=get("S3_BUCKET", ""),
            s3_prefix=get("S3_PREFIX", ""),
            s3_endpoint_url=get("S3_ENDPOINT_URL", ""),
            s3_region=get("S3_REGION", d.s3_region),
            cdn_url=get("CDN_URL", ""),
            max_upload_bytes=int(get("MAX_UPLOAD_BYTES", d.max_upload_bytes)),
            max_image_pixels=int(get("MAX_IMAGE_PIXELS", d.max_image_pixels)),
            search_backend=get("SEARCH_BACKEND", d.search_backend),
            solr_url=get("SOLR_URL", ""),
            memcached_servers=_list(env.get("MEMCACHED_SERVERS")),
            apns_key_id=get("APNS_KEY_ID", ""),
            apns_team_id=get("APNS_TEAM_ID", ""),
            apns_key_file=get("APNS_KEY_FILE", ""),
            apns_topic=get("APNS_TOPIC", ""),
            apns_host=get("APNS_HOST", d.apns_host),
            apns_sandbox_host=get("APNS_SANDBOX_HOST", d.apns_sandbox_host),
            apns_port=int(get("APNS_PORT", d.apns_port)),
            apns_ca_file=get("APNS_CA_FILE", ""),
            apns_expiration_seconds=int(get("APNS_EXPIRATION_SECONDS", d.apns_expiration_seconds)),
            apns_retry_backoff_seconds=float(get("APNS_RETRY_BACKOFF_SECONDS", d.apns_retry_backoff_seconds)),
            apns_retry_backoff_max_seconds=float(get("APNS_RETRY_BACKOFF_MAX_SECONDS",
                                                     d.apns_retry_backoff_max_seconds)),
            apns_max_retries=int(get("APNS_MAX_RETRIES", d.apns_max_retries)),
            twitter_consumer_key=get("TWITTER_CONSUMER_KEY", ""),
            twitter_consumer_secret=get("TWITTER_CONSUMER_SECRET", ""),
            twitter_api_url=get("TWITTER_API_URL", d.twitter_api_url),
            twitter_upload_url=get("TWITTER_UPLOAD_URL", d.twitter_upload_url),
            twitter_request_token_url=get("TWITTER_REQUEST_TOKEN_URL", d.twitter_request_token_url),
            twitter_authorize_url=get("TWITTER_AUTHORIZE_URL", d.twitter_authorize_url),
            twitter_access_token_url=get("TWITTER_ACCESS_TOKEN_URL", d.twitter_access_token_url),
            facebook_app_id=get("FACEBOOK_APP_ID", ""),
            facebook_app_secret=get("FACEBOOK_APP_SECRET", ""),
            facebook_graph_url=get("FACEBOOK_GRAPH_URL", d.facebook_graph_url),
            facebook_authorize_url=get("FACEBOOK_AUTHORIZE_URL", d.facebook_authorize_url),
            facebook_token_url=get("FACEBOOK_TOKEN_URL", d.facebook_token_url),
            linked_account_keys=_list(env.get("LINKED_ACCOUNT_KEYS")),
            share_timeout_seconds=float(get("SHARE_TIMEOUT_SECONDS", d.share_timeout_seconds)),
            share_retry_backoff_seconds=int(get("SHARE_RETRY_BACKOFF_SECONDS", d.share_retry_backoff_seconds)),
            share_retry_backoff_max_seconds=int(get("SHARE_RETRY_BACKOFF_MAX_SECONDS",
                                                    d.share_retry_backoff_max_seconds)),
            sentry_dsn=get("SENTRY_DSN", ""),
            worker_metrics_port=int(get("WORKER_METRICS_PORT", d.worker_metrics_port)),
            worker_metrics_host=get("WORKER_METRICS_HOST", d.worker_metrics_host),
            log_format=get("LOG_FORMAT", d.log_format).strip().lower(),
            health_max_queue_depth=int(get("HEALTH_MAX_QUEUE_DEPTH", d.health_max_queue_depth)),
            health_max_outbox_age_seconds=int(get("HEALTH_MAX_OUTBOX_AGE_SECONDS", d.health_max_outbox_age_seconds)),
            health_cache_seconds=int(get("HEALTH_CACHE_SECONDS", d.health_cache_seconds)),
            secret_key=get("SECRET_KEY", d.secret_key),
            public_url=get("PUBLIC_URL", d.public_url).rstrip("/"),
            rate_limits_enabled=_bool(env.get("RATE_LIMITS_ENABLED"), True),
            signup_rate_limit=get("SIGNUP_RATE_LIMIT", d.signup_rate_limit),
            login_rate_limit=get("LOGIN_RATE_LIMIT", d.login_rate_limit),
            trusted_proxy_hops=int(get("TRUSTED_PROXY_HOPS", d.trusted_proxy_hops)),
            token_cache_seconds=int(get("TOKEN_CACHE_SECONDS", d.token_cache_seconds)),
            argon2_time_cost=int(get("ARGON2_TIME_COST", d.argon2_time_cost)),
            argon2_memory_cost_kib=int(get("ARGON2_MEMORY_COST_KIB", d.argon2_memory_cost_kib)),
            argon2_parallelism=int(get("ARGON2_PARALLELISM", d.argon2_parallelism)),
            celebrity_threshold=int(get("CELEBRITY_THRESHOLD", d.celebrity_threshold)),
            feed_size=int(get("FEED_SIZE", d.feed_size)),
            feed_inactive_days=int(get("FEED_INACTIVE_DAYS", d.feed_inactive_days)),
            outbox_retention_hours=int(get("OUTBOX_RETENTION_HOURS", d.outbox_retention_hours)),
            auth_code_retention_hours=int(get("AUTH_CODE_RETENTION_HOURS", d.auth_code_retention_hours)),
            fanout_chunk=int(get("FANOUT_CHUNK", d.fanout_chunk)),
            photo_soft_time_limit_seconds=int(get("PHOTO_SOFT_TIME_LIMIT_SECONDS", d.photo_soft_time_limit_seconds)),
            photo_time_limit_seconds=int(get("PHOTO_TIME_LIMIT_SECONDS", d.photo_time_limit_seconds)),
            subscription_callback_allowed_networks=_list(env.get("SUBSCRIPTION_CALLBACK_ALLOWED_NETWORKS")),
            subscription_callback_timeout_seconds=float(get("SUBSCRIPTION_CALLBACK_TIMEOUT_SECONDS",
                                                            d.subscription_callback_timeout_seconds)),
            subscription_max_failures=int(get("SUBSCRIPTION_MAX_FAILURES", d.subscription_max_failures)),
            subscription_retry_backoff_seconds=int(get("SUBSCRIPTION_RETRY_BACKOFF_SECONDS",
                                                       d.subscription_retry_backoff_seconds)),
            subscription_retry_backoff_max_seconds=int(get("SUBSCRIPTION_RETRY_BACKOFF_MAX_SECONDS",
                                                           d.subscription_retry_backoff_max_seconds)),
        )
