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


# v1's names for the derivatives, in the order v1 listed them.
IMAGE_NAMES = ("thumbnail", "low_resolution", "standard_resolution", "high_resolution")


def media_id(photo) -> str:
    """v1's media id: "<photo id>_<owner id>"."""
    return f"{photo.id}_{photo.user_id}"


def location_json(location) -> dict | None:
    if location is None:
        return None
    return {"id": str(location.id), "name": location.name,
            "latitude": location.latitude, "longitude": location.longitude}


def comment_json(comment, author) -> dict:
    """v1's comment: `author` is the commenter (a User or a cached summary)."""
    return {"id": str(comment.id), "created_time": str(int(comment.created_at.timestamp())),
            "text": comment.text, "from": user_summary(author)}


def tag_json(tag) -> dict:
    return {"name": tag.name, "media_count": tag.media_count}


def media_json(photo, owner, *, location=None, tags=(), likers=(), comments=(), user_has_liked=False) -> dict:
    derivatives = photo.derivatives or {}
    created = str(int(photo.created_at.timestamp()))
    caption = None
    if photo.caption:
        caption = {"id": str(photo.id), "text": photo.caption, "created_time": created, "from": user_summary(owner)}
    return {
        "type": "image",
        "id": media_id(photo),
        "user": user_summary(owner),
        "created_time": created,
        "link": f"{services.settings.public_url}/p/{photo.shortcode}/",
        "shortcode": photo.shortcode,
        "filter": photo.filter,
        "tags": list(tags),
        "location": location_json(location),
        "caption": caption,
        "likes": {"count": photo.like_count, "data": [user_summary(u) for u in likers]},
        "comments": {"count": photo.comment_count, "data": list(comments)},
        "user_has_liked": user_has_liked,
        "users_in_photo": [],
        "images": {
            name: {"url": media_url(derivatives[name]["key"]),
                   "width": derivatives[name]["width"], "height": derivatives[name]["height"]}
            for name in IMAGE_NAMES if name in derivatives
        },
        "status": photo.status,
        "blurhash": photo.blurhash,
    }
