"""Linking a Twitter or Facebook account: the OAuth flow, the list, unlinking.

    connect   (API, with the user's access token) a random `state` goes to Redis with the
              user's id (Twitter: and the request token's secret) for STATE_TTL seconds;
              the answer is the provider's authorize URL
    callback  (the user's browser, no access token) the state is taken from Redis, once
              (GET and DEL in one MULTI): an unknown, expired or replayed one is a 400;
              the code or verifier is exchanged for the access token, stored encrypted

Facebook sends `state` back itself (OAuth 2); Twitter's OAuth 1.0a has none, so it rides
in the callback URL given with the request token, and the callback also checks that the
oauth_token is the request token of that flow.
"""
from __future__ import annotations

import json
import logging
import secrets

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import InvalidParameters, NotFound, ServiceUnavailable
from app.platform.keys import oauth_state_key
from app.sharing.crypto import TokenCipher
from app.sharing.networks import NETWORKS, Denied, Identity, Network, Tokens, Unavailable
from models import LinkedAccount, begin_write

log = logging.getLogger(__name__)

STATE_TTL = 600  # seconds a user has to answer the provider's page


def linked_json(account: LinkedAccount) -> dict:
    return {"network": account.provider, "remote_user_id": account.remote_user_id,
            "screen_name": account.screen_name, "linked_time": str(int(account.created_at.timestamp()))}


class LinkedAccounts:
    def __init__(self, db, redis, cipher: TokenCipher, networks: dict[str, Network], public_url: str) -> None:
        self.db = db
        self.redis = redis
        self.cipher = cipher
        self.networks = networks
        self.public_url = public_url

    def enabled(self, network: str) -> bool:
        """Whether `network` is configured (its app's key and secret are set): linking and sharing are on."""
        return network in self.networks and self.networks[network].enabled

    def enabled_networks(self) -> frozenset[str]:
        return frozenset(name for name in self.networks if self.enabled(name))

    def network(self, name: str) -> Network:
        """404 for a name that is not a network, 400 for one this server has no app for."""
        if name not in NETWORKS:
            raise NotFound(f"unknown network {name!r}: twitter or facebook")
        if not self.enabled(name):
            raise InvalidParameters(f"Sharing to {name} is not configured on this server.")
        return self.networks[name]

    def callback_url(self, network: str) -> str:
        return f"{self.public_url}/v1/users/self/linked/{network}/callback"

    # -- the flow ------------------------------------------------------------------
    def connect(self, user_id: int, name: str) -> str:
        """The provider's authorize URL for this user; the flow waits in Redis for its callback."""
        network = self.network(name)
        state = secrets.token_urlsafe(32)
        callback = self.callback_url(name)
        if network.needs_state_in_callback:
            callback = f"{callback}?state={state}"
        try:
            url, flow = network.start(callback, state)
        except Unavailable as error:
            log.warning("linking %s: %s", name, error)
            raise ServiceUnavailable(f"{name.capitalize()} did not answer: try again later.") from error
        self.redis.set(oauth_state_key(state), json.dumps({"user_id": user_id, "network": name, **flow}),
                       ex=STATE_TTL)
        return url

    def _take_state(self, state: str | None) -> dict | None:
        """The flow of `state`, removed as it is read: a second callback with it finds nothing."""
        if not state or len(state) > 100:
            return None
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(oauth_state_key(state))
        pipe.delete(oauth_state_key(state))
        raw, _deleted = pipe.execute()
        return json.loads(raw) if raw else None

    def callback(self, session: Session, name: str, params: dict) -> LinkedAccount:
        """The provider sent the user back: check the state, get the token, store it encrypted."""
        network = self.network(name)
        flow = self._take_state(params.get("state"))
        if flow is None or flow.get("network") != name:
            raise InvalidParameters("Invalid or expired state: start again at /v1/users/self/linked/"
                                    f"{name}/connect.")
        try:
            identity = network.finish(self.callback_url(name), flow, params)
        except Denied as error:
            raise InvalidParameters(str(error)) from error
        except Unavailable as error:
            log.warning("linking %s: %s", name, error)
            raise ServiceUnavailable(f"{name.capitalize()} did not answer: connect again later.") from error
        return self._store(session, flow["user_id"], name, identity)

    def _store(self, session: Session, user_id: int, name: str, identity: Identity) -> LinkedAccount:
        values = {"remote_user_id": identity.remote_user_id[:100], "screen_name": identity.screen_name[:100],
                  "access_token": self.cipher.encrypt(identity.tokens.access_token),
                  "access_token_secret": self.cipher.encrypt(identity.tokens.access_token_secret)}
        for _ in range(2):  # a concurrent link of the same network: the second updates the first's row
            begin_write(session)
            account = self.account(session, user_id, name)
            if account is None:
                account = LinkedAccount(user_id=user_id, provider=name, **values)
                session.add(account)
            else:
                for field, value in values.items():
                    setattr(account, field, value)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                continue
            return account
        raise InvalidParameters("This account is being linked by another request: try again.")

    # -- the list, unlinking, the tokens ----------------------------------------------
    @staticmethod
    def account(session: Session, user_id: int, name: str) -> LinkedAccount | None:
        return session.scalar(select(LinkedAccount).where(LinkedAccount.user_id == user_id,
                                                          LinkedAccount.provider == name))

    @staticmethod
    def accounts(session: Session, user_id: int) -> list[LinkedAccount]:
        return list(session.scalars(select(LinkedAccount).where(LinkedAccount.user_id == user_id)
                                    .order_by(LinkedAccount.provider)))

    def unlink(self, session: Session, user_id: int, name: str) -> bool:
        """Forget the account's tokens (the app stays authorized on the provider's side until the
        user revokes it there). False when it was not linked."""
        if name not in NETWORKS:
            raise NotFound(f"unknown network {name!r}: twitter or facebook")
        begin_write(session)
        gone = session.execute(delete(LinkedAccount).where(LinkedAccount.user_id == user_id,
                                                           LinkedAccount.provider == name)).rowcount
        session.commit()
        return bool(gone)

    def tokens(self, account: LinkedAccount) -> Tokens:
        return Tokens(self.cipher.decrypt(account.access_token), self.cipher.decrypt(account.access_token_secret))
