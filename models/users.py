"""Accounts, API clients, tokens and the social graph."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime, created_column, id_column, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = id_column()
    username: Mapped[str] = mapped_column(String(30), nullable=False)
    # Lower-cased copies carry the case-insensitive uniqueness on every database.
    username_key: Mapped[str] = mapped_column(String(30), nullable=False, unique=True)
    email: Mapped[str] = mapped_column(String(254), nullable=False)
    email_key: Mapped[str] = mapped_column(String(254), nullable=False, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    full_name: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    bio: Mapped[str] = mapped_column(String(150), nullable=False, default="")
    website: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    profile_picture_key: Mapped[str | None] = mapped_column(String(255))
    is_private: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Denormalised counts, changed only by `UPDATE … SET n = n ± 1` in the
    # transaction that changes the rows they count.
    media_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    follows_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    followed_by_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # When a token of theirs was last resolved from the database, to the day
    # (app/accounts/presence.py): fan-out skips users inactive for FEED_INACTIVE_DAYS.
    last_active_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = created_column()


class Client(Base):
    """A registered API client (an app), as in v1's developer console."""

    __tablename__ = "clients"

    id: Mapped[int] = id_column()
    client_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Kept in clear: it keys the HMAC of signed requests and X-Hub-Signature.
    client_secret: Mapped[str] = mapped_column(String(64), nullable=False)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    redirect_uri: Mapped[str] = mapped_column(String(500), nullable=False)
    enforce_signed_requests: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = created_column()


class AccessToken(Base):
    __tablename__ = "access_tokens"

    id: Mapped[int] = id_column()
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)  # sha256 hex
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), nullable=False, index=True)
    scopes: Mapped[str] = mapped_column(String(200), nullable=False, default="basic")
    created_at: Mapped[datetime] = created_column()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    id: Mapped[int] = id_column()
    code_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Indexed: deleting a user or a client cascades here.
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    client_pk: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), nullable=False, index=True)
    redirect_uri: Mapped[str] = mapped_column(String(500), nullable=False)
    scopes: Mapped[str] = mapped_column(String(200), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Follow(Base):
    """follower → followee; `pending` until a private followee approves."""

    __tablename__ = "follows"
    __table_args__ = (
        UniqueConstraint("follower_id", "followee_id"),
        # Fan-out and followed-by pages walk a followee's followers by id.
        Index("ix_follows_followee_status_id", "followee_id", "status", "id"),
        Index("ix_follows_follower_status_id", "follower_id", "status", "id"),
    )

    id: Mapped[int] = id_column()
    follower_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    followee_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, default="active")  # active | pending
    created_at: Mapped[datetime] = created_column()


class Block(Base):
    __tablename__ = "blocks"
    __table_args__ = (UniqueConstraint("blocker_id", "blocked_id"),)

    id: Mapped[int] = id_column()
    blocker_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    blocked_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    created_at: Mapped[datetime] = created_column()


class Device(Base):
    """An APNs device token that push notifications go to (app/push).

    The token is unique: registered again by another user, the row moves to them
    (a phone changed hands). updated_at is when it was last registered: APNs' 410
    carries the time the token stopped being valid, and a row registered since stays.
    """

    __tablename__ = "devices"

    id: Mapped[int] = id_column()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True)
    token: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)  # lower-case hex
    platform: Mapped[str] = mapped_column(String(10), nullable=False, default="apns")
    environment: Mapped[str] = mapped_column(String(10), nullable=False, default="production")  # | sandbox
    topic: Mapped[str | None] = mapped_column(String(255))  # None: APNS_TOPIC
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MutedNotification(Base):
    """A kind of push notification a user switched off (every kind is on until then)."""

    __tablename__ = "muted_notifications"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)


class LinkedAccount(Base):
    """A Twitter or Facebook account a user shares to."""

    __tablename__ = "linked_accounts"
    __table_args__ = (UniqueConstraint("user_id", "provider"),)

    id: Mapped[int] = id_column()
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    provider: Mapped[str] = mapped_column(String(20), nullable=False)  # twitter | facebook
    remote_user_id: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    screen_name: Mapped[str] = mapped_column(String(100), nullable=False, default="")
    access_token: Mapped[str] = mapped_column(Text, nullable=False)
    access_token_secret: Mapped[str] = mapped_column(Text, nullable=False, default="")
    created_at: Mapped[datetime] = created_column()


__all__ = [
    "User", "Client", "AccessToken", "AuthorizationCode", "Follow", "Block", "Device", "MutedNotification",
    "LinkedAccount",
]
