"""The current request's URLs, memoised (werkzeug builds them slowly)."""
from __future__ import annotations

import functools

from flask import has_request_context, request
from werkzeug.sansio.utils import get_current_url


def host_url() -> str | None:
    """This request's scheme and host (request.host_url without its slash); None outside a request."""
    if not has_request_context():
        return None
    return _current_url(request.scheme, request.host).rstrip("/")


def base_url() -> str:
    """The request's URL without its query string (request.base_url)."""
    return _current_url(request.scheme, request.host, request.root_path, request.path)


@functools.lru_cache(maxsize=1024)
def _current_url(scheme: str, host: str, root_path: str | None = None, path: str | None = None) -> str:
    """werkzeug's URL of a request, memoised: building one (IRI to URI and
    back) costs a warm feed read as much as filling in its twenty media
    objects. A server sees few hosts, and the hot paths (the feed's) are few;
    paths with ids in them take turns in the bounded cache."""
    return get_current_url(scheme, host, root_path, path)
