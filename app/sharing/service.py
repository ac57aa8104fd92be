"""Sharing a ready photo to the uploader's linked Twitter or Facebook account, at most once.

`share_to` on the upload names the networks; publish_photo sets off tasks.sharing.share_<network>
for each one that is configured (app.media.pipeline.downstream_task_names). A share:

1. needs the photo ready, the network configured and linked (else: skipped / not_linked,
   nothing posted, no error);
2. makes its row in `shares` (photo, network) and claims it with a conditional UPDATE to
   `posting`: a second run (a duplicated or redelivered task) finds it posted, or claimed
   by the first (then it retries shortly and finds it posted);
3. when the row says `unknown` (a run sent the post and got no answer: a read timeout, a
   5xx) or `posting` past its lease (a run died mid-post), first reads the user's recent
   posts for the photo's link (Twitter user_timeline, Facebook /me/photos): found, it is
   recorded, not posted again;
4. posts the standard_resolution derivative (never the original: it keeps EXIF and GPS)
   with the caption and the photo's link, and records the remote id.

A 429 or 5xx is retried later with exponential backoff and full jitter, never sooner than
the provider's reset time (x-rate-limit-reset, Retry-After). A 401 means the user revoked
the app: the linked account is removed and the user gets a `linked_account_revoked`
notice in the activity feed. share() answers a Outcome whose `result` is one of RESULTS.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from app.engagement import activity
from app.media.storage import Storage, StorageError
from app.platform import metrics
from app.sharing.linking import LinkedAccounts
from app.sharing.networks import NetworkError, NoAnswer, RateLimited, Refused, Revoked
from models import LinkedAccount, Photo, Share, begin_write, utcnow

log = logging.getLogger(__name__)

# posted: done now; already_posted: done before (by another run, or found on the network);
# not_linked: the user has no account there; revoked: the token was refused (401), unlinked;
# rate_limited / provider_error: retried later; refused: the network said no for good (4xx);
# in_progress: another run holds the claim (retried shortly); skipped: nothing to do (the photo
# is gone or not ready, the network is off or not in share_to).
RESULTS = ("posted", "already_posted", "not_linked", "revoked", "rate_limited", "provider_error", "refused",
           "in_progress", "skipped")
CLAIMABLE = ("pending", "retry", "unknown")
UNSURE = ("unknown", "posting")  # a post may have happened: look before posting
IMAGE = "standard_resolution"


@dataclass(frozen=True)
class Outcome:
    result: str
    retry_in: float | None = None  # seconds; None: nothing more to do

    def __post_init__(self) -> None:
        assert self.result in RESULTS, self.result


class Sharing:
    def __init__(self, db, storage: Storage, linked: LinkedAccounts, photo_link, *, retry_backoff_seconds: int,
                 retry_backoff_max_seconds: int) -> None:
        self.db = db
        self.storage = storage
        self.linked = linked
        self.photo_link = photo_link  # Photo -> its public link (app.media.serializers.Serializer.photo_link)
        self.retry_backoff_seconds = retry_backoff_seconds
        self.retry_backoff_max_seconds = retry_backoff_max_seconds
        # A claim older than this belongs to a run that died: the next run may take it over
        # (after looking for the post). Longer than a run's three requests can take.
        timeout = max(network.timeout for network in linked.networks.values()) if linked.networks else 10
        self.claim_lease = timedelta(seconds=max(60.0, 8 * timeout))

    def enabled(self, network: str) -> bool:
        """Whether sharing to `network` is on (its app is configured): for /healthz."""
        return self.linked.enabled(network)

    def enabled_networks(self) -> frozenset[str]:
        return self.linked.enabled_networks()

    def retry_delay(self, retries: int, at_least: float | None = None) -> float:
        """Exponential, full jitter (Celery's formula), never before the provider's reset."""
        delay = get_exponential_backoff_interval(self.retry_backoff_seconds, retries,
                                                 self.retry_backoff_max_seconds, full_jitter=True)
        return max(float(delay), at_least or 0.0, 0.5)

    # -- the share ------------------------------------------------------------------
    def share(self, photo_id: int, network: str, retries: int = 0) -> Outcome:
        outcome = self._share(photo_id, network, retries)
        log.info("share of photo %s to %s: %s", photo_id, network, outcome.result)
        metrics.SHARES.labels(network, outcome.result).inc()
        return outcome

    def _share(self, photo_id: int, network: str, retries: int) -> Outcome:
        with self.db.session() as session:
            photo = session.get(Photo, photo_id)
            if (photo is None or photo.status != "ready" or network not in (photo.share_to or [])
                    or not self.enabled(network)):
                return Outcome("skipped")
            account = self.linked.account(session, photo.user_id, network)
            if account is None:
                return Outcome("not_linked")
            claimed_from = self._claim(session, photo_id, network)
            if claimed_from in ("posted", "revoked", "refused"):
                return Outcome("already_posted" if claimed_from == "posted" else "skipped")
            if claimed_from is None:
                return Outcome("in_progress", self.retry_delay(retries))
            tokens = self.linked.tokens(account)
            client = self.linked.networks[network]
            link = self.photo_link(photo)
            unsure = claimed_from in UNSURE
            try:
                if unsure:
                    remote_id = client.find(tokens, link)
                    if remote_id is not None:
                        self._finish(session, photo_id, network, "posted", remote_id=remote_id)
                        return Outcome("already_posted")
                image = self.storage.get(photo.derivatives[IMAGE]["key"])
                remote_id = client.post(tokens, image, photo.caption, link)
            except Revoked as error:
                self._revoked(session, photo, network, account.id, error)
                return Outcome("revoked")
            except NoAnswer as error:  # it may be posted: the next run looks first
                self._finish(session, photo_id, network, "unknown", error=error)
                return Outcome("provider_error", self.retry_delay(retries))
            except Refused as error:
                self._finish(session, photo_id, network, "refused", error=error)
                return Outcome("refused")
            except (NetworkError, StorageError) as error:  # nothing new was sent
                self._finish(session, photo_id, network, "unknown" if unsure else "retry", error=error)
                result = "rate_limited" if isinstance(error, RateLimited) else "provider_error"
                return Outcome(result, self.retry_delay(retries, getattr(error, "retry_after", None)))
            self._finish(session, photo_id, network, "posted", remote_id=remote_id)
            return Outcome("posted")

    def _claim(self, session, photo_id: int, network: str) -> str | None:
        """The row's status before this run claimed it; a final status (posted, revoked,
        refused) when there is nothing to do; None when another run holds it."""
        begin_write(session)
        dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
        now = utcnow()
        session.execute(dialect.insert(Share).values(photo_id=photo_id, network=network, status="pending",
                                                     attempts=0, created_at=now, updated_at=now)
                        .on_conflict_do_nothing())
        row = session.execute(select(Share.status, Share.claimed_at, Share.attempts).where(
            Share.photo_id == photo_id, Share.network == network)).one()
        stale = row.status == "posting" and row.claimed_at is not None and row.claimed_at < now - self.claim_lease
        if row.status not in CLAIMABLE and not stale:
            session.commit()
            return None if row.status == "posting" else row.status
        # Conditional on what was read (attempts is the row's version): of two runs, one moves it.
        claimed = session.execute(
            update(Share).where(Share.photo_id == photo_id, Share.network == network, Share.status == row.status,
                                Share.attempts == row.attempts)
            .values(status="posting", claimed_at=now, attempts=Share.attempts + 1, updated_at=now)).rowcount
        session.commit()
        return row.status if claimed else None

    def _finish(self, session, photo_id: int, network: str, status: str, *, remote_id: str | None = None,
                error: Exception | None = None) -> None:
        begin_write(session)
        session.execute(update(Share).where(Share.photo_id == photo_id, Share.network == network,
                                            Share.status == "posting")
                        .values(status=status, remote_id=remote_id, updated_at=utcnow(),
                                last_error=str(error)[:300] if error else None))
        session.commit()
        if error is not None:
            log.warning("share of photo %s to %s: %s (%s)", photo_id, network, status, error)

    def _revoked(self, session, photo: Photo, network: str, account_id: int, error: Exception) -> None:
        """The token is refused: the account is unlinked and its owner told, in one commit."""
        begin_write(session)
        session.execute(update(Share).where(Share.photo_id == photo.id, Share.network == network,
                                            Share.status == "posting")
                        .values(status="revoked", updated_at=utcnow(), last_error=str(error)[:300]))
        # That account only: one linked again meanwhile has a new token.
        gone = session.execute(delete(LinkedAccount).where(LinkedAccount.id == account_id)).rowcount
        if gone:
            activity.record_notice(session, photo.user_id, "linked_account_revoked", photo_id=photo.id,
                                   detail=network)
        session.commit()
        log.warning("share of photo %s to %s: the token was revoked; account unlinked", photo.id, network)
