"""v1's JSON shapes for the objects the API returns."""
from __future__ import annotations

from flask import has_request_context, request

from app.services import services
from models import User


def public_url(url: str) -> str:
    """Storage gives '/media/…' for the local folder; clients want absolute URLs."""
    if url.startswith("/"):
        base = request.host_url.rstrip("/") if has_request_context() else services.settings.public_url
        return base + url
    return url


def media_url(key: str | None) -> str:
    return public_url(services.storage.url(key)) if key else ""


def user_summary(user: User) -> dict:
    return {
        "id": str(user.id),
        "username": user.username,
        "full_name": user.full_name,
        "profile_picture": media_url(user.profile_picture_key),
    }


def user_full(user: User) -> dict:
    return {
        **user_summary(user),
        "bio": user.bio,
        "website": user.website,
        "is_private": user.is_private,
        "counts": {"media": user.media_count, "follows": user.follows_count, "followed_by": user.followed_by_count},
    }
