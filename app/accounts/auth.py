"""Passwords, access tokens, API clients and signed requests."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import string
from dataclasses import dataclass
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.platform.aftercommit import after_commit
from app.platform.clocks import STAMP_LUA, Clocks
from app.platform.keys import token_cache_key, token_clock_key
from models import AccessToken, Client, User, utcnow

# v1's four, plus publish (an addition): upload, delete and profile edits; basic stays read-only.
SCOPES = ("basic", "comments", "relationships", "likes", "publish")

class PasswordService:
    """argon2id password hashes, at the cost the settings give (ARGON2_*)."""

    def __init__(self, time_cost: int, memory_cost_kib: int, parallelism: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost_kib, parallelism=parallelism)
        # Verifying against this when the user does not exist keeps the timing the same.
        self._dummy_hash = self._hasher.hash("not-a-real-password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False


def new_password_hash(passwords: PasswordService, user, current: str | None, new: str) -> str | None:
    """The slow half of a password change (argon2 twice): the hash of `new` when
    `current` is the user's password, else None. Run it with no transaction open."""
    if not current or not passwords.verify(user.password_hash, current):
        return None
    return passwords.hash(new)


def set_password(session: Session, tokens: "TokenService", user, password_hash: str) -> None:
    """Store a new password hash and revoke all the user's tokens (when `session`
    commits): every client must log in again."""
    user.password_hash = password_hash
    tokens.revoke_all(session, user.id)


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def parse_scopes(raw: str | None) -> list[str] | None:
    """'basic likes' → ['basic', 'likes']; None when a scope is unknown."""
    requested = (raw or "basic").replace(",", " ").split()
    if any(scope not in SCOPES for scope in requested):
        return None
    # basic is implied by every token, as in v1
    return sorted(set(requested) | {"basic"}, key=SCOPES.index)


# redirect_uri matching (RFC 3986 §6.2.2 normalisation, then equality)
UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalise_percent(match: re.Match) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in UNRESERVED else match.group(0).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, on an absolute path."""
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.endswith(("/.", "/..")):
        output.append("")
    return "/".join(output) or "/"


def normalise_uri(uri: str) -> tuple | None:
    """RFC 3986 §6.2.2 (and §6.2.3's default port and empty path); None when unparseable."""
    def decode(part: str) -> str:
        return re.sub(r"%([0-9A-Fa-f]{2})", _normalise_percent, part)

    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    port = None if port == DEFAULT_PORTS.get(scheme) else port
    host = decode(parts.hostname or "").lower()
    return (scheme, parts.username, parts.password, host, port,
            _remove_dot_segments(decode(parts.path)), decode(parts.query), parts.fragment)


def same_redirect_uri(registered: str, given: str) -> bool:
    """The registered redirect_uri, exactly, once both are normalised: no sub-path, no
    other host, port or scheme, and `%2e%2e` is `..` (RFC 6749 §3.1.2.3, RFC 3986 §6.2.2)."""
    normalised = normalise_uri(given)
    return normalised is not None and normalised == normalise_uri(registered)


def new_client_credentials() -> tuple[str, str]:
    return secrets.token_hex(16), secrets.token_hex(16)


def authenticate_client(session: Session, client_id: str, client_secret: str) -> Client | None:
    client = session.scalar(select(Client).where(Client.client_id == client_id))
    # bytes: compare_digest raises TypeError on non-ASCII str
    if client is None or not hmac.compare_digest(client.client_secret.encode(), (client_secret or "").encode()):
        return None
    return client


def request_signature(secret: str, endpoint: str, params: dict[str, str]) -> str:
    """v1's `sig`: HMAC-SHA256 of `endpoint|k1=v1|k2=v2…` (keys sorted)."""
    message = endpoint + "".join(f"|{key}={params[key]}" for key in sorted(params))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


# The parameters that say who calls: what the official client's first `sig` covers.
AUTH_PARAMS = ("access_token", "client_id", "client_secret")
MAX_SIGS = 4  # the official client sends two; more is no client's, and each costs HMACs


def signature_matches(secret: str, endpoints: list[str], params: dict[str, str], sigs: list[str]) -> bool:
    """Whether one of `sigs` signs the request: over one spelling of its endpoint (the
    path after /v1) and either all its `params` (v1's documented signature) or only
    the auth params among them, which is what python-instagram 1.3.2's first `sig`
    covers (its second one formats values as Python 3 `b'…'` reprs, and its POSTs
    sign no body). The second form proves the caller holds the secret, not which
    parameters it signed: README, "Departures"."""
    if not sigs or len(sigs) > MAX_SIGS:
        return False
    signed_sets = [params]
    auth_only = {key: params[key] for key in AUTH_PARAMS if key in params}
    if auth_only and auth_only != params:
        signed_sets.append(auth_only)
    expected = {request_signature(secret, endpoint, signed).encode()
                for endpoint in dict.fromkeys(endpoints) for signed in signed_sets}
    # every pair compared, each in constant time; bytes: compare_digest refuses non-ASCII str
    matches = [hmac.compare_digest(candidate, sig.encode()) for candidate in expected for sig in sigs]
    return any(matches)


@dataclass(frozen=True)
class TokenInfo:
    user_id: int
    client_pk: int
    scopes: tuple[str, ...]
    enforce_signed_requests: bool


FORGET_TOKENS_TASK = "tasks.feeds.forget_tokens"  # redoes a forget that failed after the revoking commit

# KEYS: the cached lookups to drop, then their clocks (app/platform/clocks.py), in the same order.
FORGET_TOKENS_LUA = STAMP_LUA + """
local half = #KEYS / 2
for i = 1, half do
  redis.call('DEL', KEYS[i])
  stamp(KEYS[half + i])
end
"""


class TokenService:
    """Issues tokens (stored hashed) and resolves them, from Redis when warm.

    A revoked token's cached lookup is dropped after the revoking commit, and its
    clock stamped, so a lookup that read the database before that commit cannot
    cache it again (app/platform/clocks.py)."""

    def __init__(self, redis, cache_seconds: int, presence=None) -> None:
        self.redis = redis
        self.cache_seconds = cache_seconds
        self.presence = presence  # app.accounts.presence.Presence: told of each lookup from the database
        self.clocks = Clocks(redis)
        self._forget = redis.register_script(FORGET_TOKENS_LUA)

    def key(self, raw: str) -> str:
        """The Redis key a token's cached lookup lives under (the feed's script reads it)."""
        return token_cache_key(sha256(raw))

    @staticmethod
    def from_cached(cached: str) -> TokenInfo:
        """The TokenInfo of a cached lookup, as `resolve` stored it."""
        data = json.loads(cached)
        return TokenInfo(data["u"], data["c"], tuple(data["s"]), data["e"])

    def issue(self, session: Session, user_id: int, client: Client, scopes: list[str]) -> str:
        raw = f"{user_id}.{secrets.token_urlsafe(32)}"
        session.add(AccessToken(token_hash=sha256(raw), user_id=user_id, client_pk=client.id, scopes=" ".join(scopes)))
        return raw

    def resolve(self, session: Session, raw: str) -> TokenInfo | None:
        token_hash = sha256(raw)
        cached = self.redis.get(token_cache_key(token_hash))
        if cached:
            return self.from_cached(cached)
        since = self.clocks.now()  # before the query: a revocation committed after it wins
        row = session.execute(
            select(AccessToken, Client.enforce_signed_requests, User.last_active_at)
            .join(Client, Client.id == AccessToken.client_pk)
            .join(User, User.id == AccessToken.user_id)
            .where(AccessToken.token_hash == token_hash, AccessToken.revoked_at.is_(None))
        ).first()
        if row is None:
            return None
        token, enforce, last_active_at = row
        if self.presence is not None:
            self.presence.seen(session, token.user_id, last_active_at)
        info = TokenInfo(token.user_id, token.client_pk, tuple(token.scopes.split()), bool(enforce))
        payload = {"u": info.user_id, "c": info.client_pk, "s": list(info.scopes), "e": info.enforce_signed_requests}
        self.clocks.store_string(token_clock_key(token_hash), token_cache_key(token_hash), since, json.dumps(payload),
                                 self.cache_seconds)
        return info

    def revoke_all(self, session: Session, user_id: int) -> None:
        """Revoke every token of the user; their cached lookups go when `session` commits."""
        hashes = session.scalars(
            update(AccessToken)
            .where(AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .returning(AccessToken.token_hash)
        ).all()
        self._forget_after_commit(session, hashes)

    def revoke(self, session: Session, client: Client, raw: str) -> bool:
        """RFC 7009: revoke one of `client`'s tokens (its cached lookup goes when `session`
        commits). False when the token is another client's; an unknown token is no error."""
        token_hash = sha256(raw)
        owner = session.scalar(select(AccessToken.client_pk).where(AccessToken.token_hash == token_hash))
        if owner is None:
            return True
        if owner != client.id:
            return False
        session.execute(
            update(AccessToken)
            .where(AccessToken.token_hash == token_hash, AccessToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        self._forget_after_commit(session, [token_hash])
        return True

    def _forget_after_commit(self, session: Session, hashes: list[str]) -> None:
        # Not before: a lookup between the delete and the commit would read the token as
        # valid and cache it again. If Redis fails then, a task does it (the cached lookup
        # would otherwise accept the revoked token for TOKEN_CACHE_SECONDS).
        if hashes:
            after_commit(session).best_effort("tokens.forget", self.forget, retry_as=FORGET_TOKENS_TASK,
                                              hashes=list(hashes))

    def forget(self, hashes: list[str]) -> None:
        """Drop the cached lookups of these token hashes and stamp their clocks."""
        self._forget(keys=[*map(token_cache_key, hashes), *map(token_clock_key, hashes)])
