"""v1's JSON shapes for the objects the API returns.

A Serializer knows where files are served from (the storage's URLs) and the
public URL; the composition root (app/services.py) makes one per process.
"""
from __future__ import annotations

from typing import Callable

from app.platform import urls
from models import User

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


def tag_json(tag) -> dict:
    return {"name": tag.name, "media_count": tag.media_count}


class Serializer:
    def __init__(self, storage_url: Callable[[str], str], public_url: str) -> None:
        self.storage_url = storage_url  # Storage.url: a key's URL, '/media/…' for the local folder
        self.public_url = public_url  # PUBLIC_URL: links, and file URLs outside a request

    def url_base(self) -> str:
        """What relative storage URLs are prefixed with: this request's host, or PUBLIC_URL."""
        return urls.host_url() or self.public_url

    def absolute(self, url: str, base: str | None = None) -> str:
        """Storage gives '/media/…' for the local folder; clients want absolute URLs."""
        if url.startswith("/"):
            return (base if base is not None else self.url_base()) + url
        return url

    def media_url(self, key: str | None, base: str | None = None) -> str:
        return self.absolute(self.storage_url(key), base) if key else ""

    def user_summary(self, user: User, base: str | None = None) -> dict:
        return {
            "id": str(user.id),
            "username": user.username,
            "full_name": user.full_name,
            "profile_picture": self.media_url(user.profile_picture_key, base),
        }

    def user_full(self, user: User, base: str | None = None) -> dict:
        return {
            **self.user_summary(user, base),
            "bio": user.bio,
            "website": user.website,
            "is_private": user.is_private,
            "counts": {"media": user.media_count, "follows": user.follows_count,
                       "followed_by": user.followed_by_count},
        }

    def comment_json(self, comment, author) -> dict:
        """v1's comment: `author` is the commenter (a User or a cached summary), or None."""
        return {"id": str(comment.id), "created_time": str(int(comment.created_at.timestamp())),
                "text": comment.text, "from": self.user_summary(author) if author is not None else None}

    def photo_link(self, photo) -> str:
        """The photo's public page (a media object's `link`; shares carry it too)."""
        return f"{self.public_url}/p/{photo.shortcode}/"

    def media_body(self, photo, *, location=None, tags=()) -> dict:
        """The part of a media object that depends on the photo alone, so it can be
        cached: no users, and image URLs as the storage gives them (see media_json)."""
        derivatives = photo.derivatives or {}
        created = str(int(photo.created_at.timestamp()))
        return {
            "type": "image",
            "id": media_id(photo),
            "user": None,
            "created_time": created,
            "link": self.photo_link(photo),
            "shortcode": photo.shortcode,
            "filter": photo.filter,
            "tags": list(tags),
            "location": location_json(location),
            "caption": {"id": str(photo.id), "text": photo.caption, "created_time": created, "from": None}
            if photo.caption else None,
            "likes": {"count": photo.like_count, "data": []},
            "comments": {"count": photo.comment_count, "data": []},
            "user_has_liked": False,
            "users_in_photo": [],
            "images": {
                name: {"url": self.storage_url(derivatives[name]["key"]),
                       "width": derivatives[name]["width"], "height": derivatives[name]["height"]}
                for name in IMAGE_NAMES if name in derivatives
            },
            "status": photo.status,
            "blurhash": photo.blurhash,
        }

    def media_json(self, body: dict, owner: dict, *, likers=(), comments=(), user_has_liked=False,
                   base: str | None = None) -> dict:
        """v1's media object from its body and the viewer's view of it; `owner` and
        `likers` are user_summary() dicts, `comments` comment_json() dicts."""
        media = {
            **body,
            "user": owner,
            "likes": {"count": body["likes"]["count"], "data": list(likers)},
            "comments": {"count": body["comments"]["count"], "data": list(comments)},
            "user_has_liked": user_has_liked,
            "images": {name: {**image, "url": self.absolute(image["url"], base)}
                       for name, image in body["images"].items()},
        }
        if body["caption"]:
            media["caption"] = {**body["caption"], "from": owner}
        return media
