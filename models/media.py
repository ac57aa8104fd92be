"""Photos and what hangs off them: likes, comments, tags, locations, activity."""
from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, created_column, id_column


def new_derivative_token() -> str:
    return secrets.token_hex(16)


class Location(Base):
    __tablename__ = "locations"
    __table_args__ = (Index("ix_locations_lat_lng", "latitude", "longitude"),)

    id: Mapped[int] = id_column()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    latitude: Mapped[float] = mapped_column(Float, nullable=False)
    longitude: Mapped[float] = mapped_column(Float, nullable=False)
    created_at: Mapped[datetime] = created_column()


class Photo(Base):
    __tablename__ = "photos"
    __table_args__ = (
        # A retried upload with the same Idempotency-Key finds the first photo.
        UniqueConstraint("user_id", "idempotency_key"),
        Index("ix_photos_user_id_id", "user_id", "id"),
        Index("ix_photos_status_updated_at", "status", "updated_at"),
        # The sweeper's batch of photos still to move under a token (app/media/rekey.py):
        # small, and empty once every old photo has moved, instead of a scan a minute.
        Index("ix_photos_without_token", "id", postgresql_where=text("derivative_token IS NULL"),
              sqlite_where=text("derivative_token IS NULL")),
    )

    id: Mapped[int] = id_column()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    shortcode: Mapped[str] = mapped_column(String(16), nullable=False, unique=True)
    status: Mapped[str] = mapped_column(String(12), nullable=False, default="processing")  # processing|ready|failed
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    caption: Mapped[str | None] = mapped_column(Text)
    filter: Mapped[str] = mapped_column(String(40), nullable=False, default="Normal")
    location_id: Mapped[int | None] = mapped_column(ForeignKey("locations.id", ondelete="SET NULL"), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    original_key: Mapped[str] = mapped_column(String(255), nullable=False)
    original_content_type: Mapped[str] = mapped_column(String(40), nullable=False)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    # {"thumbnail": {"key", "width", "height"}, "low_resolution": …}
    derivatives: Mapped[dict | None] = mapped_column(JSON)
    # The unguessable part of the derivatives' keys, so a media id does not give away its image
    # URLs (a private account's photos). NULL only on rows processed before it existed.
    derivative_token: Mapped[str | None] = mapped_column(String(32), default=new_derivative_token)
    blurhash: Mapped[str | None] = mapped_column(String(100))
    share_to: Mapped[list | None] = mapped_column(JSON)  # ["twitter", "facebook"]
    idempotency_key: Mapped[str | None] = mapped_column(String(100))
    like_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    comment_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = created_column()
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Like(Base):
    __tablename__ = "likes"
    __table_args__ = (
        UniqueConstraint("photo_id", "user_id"),
        Index("ix_likes_user_id_id", "user_id", "id"),
        # A photo's newest likers (media objects, GET /media/{id}/likes) without a sort.
        Index("ix_likes_photo_id_id", "photo_id", "id"),
    )

    id: Mapped[int] = id_column()  # time-ordered: the max_like_id cursor
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[datetime] = created_column()


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_photo_id_id", "photo_id", "id"),)

    id: Mapped[int] = id_column()
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), nullable=False)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    text: Mapped[str] = mapped_column(String(300), nullable=False)
    created_at: Mapped[datetime] = created_column()


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = id_column()
    name: Mapped[str] = mapped_column(String(100), nullable=False, unique=True)  # lower-cased
    media_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)


class PhotoTag(Base):
    __tablename__ = "photo_tags"

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    # The photo id is time-ordered, so it is also the max_tag_id cursor.
    photo_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Activity(Base):
    """What the activity feed shows; Redis holds the capped copy, this the truth."""

    __tablename__ = "activities"
    __table_args__ = (Index("ix_activities_user_id_id", "user_id", "id"),)

    id: Mapped[int] = id_column()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)  # recipient
    # Indexed: deleting a user, photo or comment cascades here, and unlike/unfollow delete by them.
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    # like|comment|follow|follow_request|mention|linked_account_revoked (app.engagement.activity.TYPES)
    type: Mapped[str] = mapped_column(String(40), nullable=False)
    detail: Mapped[str | None] = mapped_column(String(40))  # linked_account_revoked: the network
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    comment_id: Mapped[int | None] = mapped_column(ForeignKey("comments.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = created_column()


class Subscription(Base):
    """A real-time subscription of an API client (v1's PubSubHubbub-style callbacks; app/realtime).

    A geography's object_id is its own id (v1's geography id, /geographies/{id}/media/recent).
    """

    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_object_object_id", "object", "object_id"),
        # Geographies near a photo: a latitude band first (app.realtime.subscriptions).
        Index("ix_subscriptions_object_latitude", "object", "latitude"),
    )

    id: Mapped[int] = id_column()
    client_pk: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), nullable=False, index=True)
    object: Mapped[str] = mapped_column(String(20), nullable=False)  # user|tag|location|geography
    object_id: Mapped[str | None] = mapped_column(String(100))
    aspect: Mapped[str] = mapped_column(String(20), nullable=False, default="media")
    callback_url: Mapped[str] = mapped_column(String(500), nullable=False)
    verify_token: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    radius: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_column()
    # Failed deliveries in a row (a success resets it); at SUBSCRIPTION_MAX_FAILURES the
    # subscription is disabled: no longer matched, gone from GET /v1/subscriptions.
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(300))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SubscriptionDelivery(Base):
    """A photo announced to a subscription: claimed once, so a task run twice announces it once."""

    __tablename__ = "subscription_deliveries"
    __table_args__ = (Index("ix_subscription_deliveries_created_at", "created_at"),)  # the sweeper's purge

    subscription_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True)
    photo_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = created_column()


class Outbox(Base):
    """Work promised in the same transaction as the data it concerns.

    The upload commits the photo and its outbox row together; the row is
    marked delivered once the broker has the task, and the sweeper re-sends
    rows that never were (a broker outage between commit and enqueue).
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_delivered_at_created_at", "delivered_at", "created_at"),)

    id: Mapped[int] = id_column()
    kind: Mapped[str] = mapped_column(String(40), nullable=False)  # e.g. process_photo
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    payload: Mapped[dict | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = created_column()
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The request (X-Request-Id) it was promised under: the sweeper publishes it with that id.
    request_id: Mapped[str | None] = mapped_column(String(64))
