"""v1's JSON shapes for the objects the API returns."""
from __future__ import annotations

import functools

from flask import has_request_context, request
from werkzeug.sansio.utils import get_current_url

from app.services import services
from models import User


def url_base() -> str:
    """What relative storage URLs are prefixed with: this request's host, or PUBLIC_URL."""
    if not has_request_context():
        return services.settings.public_url
    return _current_url(request.scheme, request.host).rstrip("/")  # request.host_url


def request_base_url() -> str:
    """The request's URL without its query string (request.base_url)."""
    return _current_url(request.scheme, request.host, request.root_path, request.path)


@functools.lru_cache(maxsize=1024)
def _current_url(scheme: str, host: str, root_path: str | None = None, path: str | None = None) -> str:
    """werkzeug's URL of a request, memoised: building one (IRI to URI and
    back) costs a warm feed read as much as filling in its twenty media
    objects. A server sees few hosts, and the hot paths (the feed's) are few;
    paths with ids in them take turns in the bounded cache."""
    return get_current_url(scheme, host, root_path, path)


def public_url(url: str, base: str | None = None) -> str:
    """Storage gives '/media/…' for the local folder; clients want absolute URLs."""
    if url.startswith("/"):
        return (base if base is not None else url_base()) + url
    return url


def media_url(key: str | None, base: str | None = None) -> str:
    return public_url(services.storage.url(key), base) if key else ""


def user_summary(user: User, base: str | None = None) -> dict:
    return {
        "id": str(user.id),
        "username": user.username,
        "full_name": user.full_name,
        "profile_picture": media_url(user.profile_picture_key, base),
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
            "text": comment.text, "from": user_summary(author) if author is not None else None}


def tag_json(tag) -> dict:
    return {"name": tag.name, "media_count": tag.media_count}


def media_body(photo, *, location=None, tags=()) -> dict:
    """The part of a media object that depends on the photo alone, so it can be
    cached: no users, and image URLs as the storage gives them (see media_json)."""
    derivatives = photo.derivatives or {}
    created = str(int(photo.created_at.timestamp()))
    return {
        "type": "image",
        "id": media_id(photo),
        "user": None,
        "created_time": created,
        "link": f"{services.settings.public_url}/p/{photo.shortcode}/",
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
            name: {"url": services.storage.url(derivatives[name]["key"]),
                   "width": derivatives[name]["width"], "height": derivatives[name]["height"]}
            for name in IMAGE_NAMES if name in derivatives
        },
        "status": photo.status,
        "blurhash": photo.blurhash,
    }


def media_json(body: dict, owner: dict, *, likers=(), comments=(), user_has_liked=False,
               base: str | None = None) -> dict:
    """v1's media object from its body and the viewer's view of it; `owner` and
    `likers` are user_summary() dicts, `comments` comment_json() dicts."""
    media = {
        **body,
        "user": owner,
        "likes": {"count": body["likes"]["count"], "data": list(likers)},
        "comments": {"count": body["comments"]["count"], "data": list(comments)},
        "user_has_liked": user_has_liked,
        "images": {name: {**image, "url": public_url(image["url"], base)} for name, image in body["images"].items()},
    }
    if body["caption"]:
        media["caption"] = {**body["caption"], "from": owner}
    return media
