"""Shares: a photo posted to a linked Twitter or Facebook account (app/sharing)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, created_column, utcnow

# pending: not tried yet; posting: claimed by a run (its claimed_at says since when);
# unknown: a run sent the post and got no answer (checked before any new post);
# retry: refused for now (429, 5xx before posting), safe to post again;
# posted: done (remote_id); revoked / not_linked: given up.
SHARE_STATUSES = ("pending", "posting", "unknown", "retry", "posted", "revoked", "not_linked")


class Share(Base):
    """At most one post per photo and network: the row is the intent, claimed by a conditional UPDATE."""

    __tablename__ = "shares"

    photo_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True)
    network: Mapped[str] = mapped_column(String(20), primary_key=True)  # twitter | facebook
    status: Mapped[str] = mapped_column(String(20), nullable=False, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    remote_id: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(String(300))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)


__all__ = ["Share", "SHARE_STATUSES"]
