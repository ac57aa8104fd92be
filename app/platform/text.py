"""#tags and @mentions in captions and comments.

Tag names are lower-cased runs of letters (any script), digits and `_`, up to
100 characters; a longer run is no tag at all rather than a truncated one.
Mentions are usernames (`[A-Za-z0-9._]`, 1–30), matched case-insensitively.
"""
from __future__ import annotations

import re

MAX_TAG_LENGTH = 100
MAX_TAGS = 30  # Instagram's own limit per caption
MAX_MENTIONS = 20

# (?<!\w): "a#b" or an e-mail-like "x@y" is not a tag or a mention.
_TAG = re.compile(r"(?<![\w#&])#(\w+)")
_TAG_NAME = re.compile(r"\w{1,%d}" % MAX_TAG_LENGTH)
_MENTION = re.compile(r"(?<![\w.@])@([A-Za-z0-9._]{1,30})(?![A-Za-z0-9_])")


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))


def tags(text: str | None) -> list[str]:
    """The distinct tag names in `text`, lower-cased, in order of appearance."""
    if not text:
        return []
    names = (m.group(1).lower() for m in _TAG.finditer(text))
    return _unique(n for n in names if len(n) <= MAX_TAG_LENGTH)[:MAX_TAGS]


def mentions(text: str | None) -> list[str]:
    """The distinct usernames mentioned in `text`, lower-cased (usernames' unique key)."""
    if not text:
        return []
    # A mention at the end of a sentence ("thanks @bob.") does not own the dot.
    names = (m.group(1).rstrip(".").lower() for m in _MENTION.finditer(text))
    return _unique(n for n in names if n)[:MAX_MENTIONS]


def normal_tag_name(name: str) -> str | None:
    """A tag name from a URL, lower-cased; None when it cannot be a tag."""
    return name.lower() if _TAG_NAME.fullmatch(name) else None

