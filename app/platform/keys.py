"""Every key Shutter keeps in Redis or the cache, named in one place.

Each store's keys have a prefix of their own; the Lua scripts that build keys
themselves (the warm feed read) take these prefixes from here, so the two
languages cannot drift apart. Ids are decimal strings.
"""
from __future__ import annotations

# -- the cache (memcached or Redis: app.platform.cache) ------------------------
CACHED_USER = "u:"  # a user's summary row (no counts)
CACHED_PHOTO = "p:"  # a photo's row
CACHED_MEDIA = "m:"  # a ready photo's media object body, with the ids of the users it shows

# -- home feeds (app.feeds.manager) ------------------------------------------------
FEED = "feed:"  # sorted set: a user's home feed
POSTS = "posts:"  # sorted set: a celebrity's own photos, merged into followers' feeds on read
FOLLOWING = "following:"  # set: whom a user actively follows
CELEBRITIES = "celebs:"  # string: the celebrities a user follows
# -- the rendered warm read (app.feeds.rendered) ------------------------------------
RENDERED_MEDIA = "mi:"  # a ready photo's index entry: owner, fragment hash, users shown
RENDERED_USER = "ui:"  # the hash of a user's rendered summary
FRAGMENT = "rb:"  # a rendered fragment, by the hash of its text
LIKED = "liked:"  # set: the photos a user liked
# -- the social graph's warm copy (app.social.graph) ---------------------------------
RELATIONS = "rel:"  # hash: a user's follow requests and blocks either way, by the other user's id
PRIVATE = "private:"  # string: "1" when the account is private, "0" when public
# -- the warm media lists (app.reads.lists): sorted sets, every score 0, read by lex range --------
USER_MEDIA = "um:"  # a user's ready photo ids
TAG_MEDIA = "tm:"  # a tag's ready photo ids, by the tag's (lower-cased) name
LOCATION_MEDIA = "lm:"  # a location's ready photo ids
LIKED_MEDIA = "lkm:"  # "<like id>:<photo id>" of the photos a user liked
# -- warm profile reads (app.reads.profiles) ------------------------------------------
RENDERED_PROFILE = "uf:"  # the hash of a user's rendered full object (with counts)
ACTIVITY_ENTRY = "ai:"  # an activity's index entry: its actor, its photo, the hash of its rendered object
# -- warm lists (app.reads.social): strings of fixed-width records, tombstoned like mi: -------------
COMMENTS_LIST = "list:comments:"  # a photo's comments, oldest first: comment id, author id, fragment hash
LIKES_LIST = "list:likes:"  # a photo's likes, newest first: like id, liker id
FOLLOWED_BY_LIST = "list:followed-by:"  # a user's followers, newest follow first: follow id, follower id
FOLLOWS_LIST = "list:follows:"  # whom a user follows, newest follow first: follow id, followee id
REQUESTED_BY_LIST = "list:requested-by:"  # who asked to follow a user, newest first: follow id, asker id
# -- activity, popular, tokens -------------------------------------------------------
ACTIVITY = "activity:"  # sorted set: the activity a user received
ACTIVITY_SEEN = "activity-seen:"  # string: the newest activity id the user has read (the push badge counts past it)
PUSH_CLAIMED = "push-claimed:"  # string: an activity whose push was sent to its devices' deliver tasks
POPULAR = "popular"  # sorted set: /media/popular's ranking
TOKEN = "token:"  # a token's cached lookup, by the token's hash
TOKEN_CLOCK = "token-clock:"  # when a token last changed (revoked, re-scoped)
CLOCK_SUFFIX = ":changed"  # after a key: when what it caches last changed (app.platform.clocks)
# -- the Redis search backend (app.search.redis_backend); every one starts with SEARCH --------
SEARCH = "search:"
SEARCH_PHOTOS_DAY = "search:photos:"  # GEO set: the photos taken on one UTC day (day number after it)
SEARCH_POLAR_PHOTOS = "search:polar-photos"  # hash: photo id -> "lat,lng", beyond Redis GEO's latitudes
SEARCH_LOCATIONS = "search:locations"  # GEO set: locations
SEARCH_POLAR_LOCATIONS = "search:polar-locations"  # hash: location id -> "lat,lng"
SEARCH_USERNAMES = "search:usernames"  # sorted set, all scores 0: "<username_key>\0<id>", by ZRANGEBYLEX
SEARCH_FULL_NAMES = "search:full-names"  # likewise "<lower-cased full name>\0<id>"
SEARCH_USER_ENTRIES = "search:user-entries"  # hash: user id -> its two entries above (JSON), to replace them
SEARCH_TAG_PREFIX = "search:tag-prefix:"  # sorted set per prefix of a tag name: names scored by -media_count


def cached_user_key(user_id: int) -> str:
    return f"{CACHED_USER}{user_id}"


def cached_photo_key(photo_id: int) -> str:
    return f"{CACHED_PHOTO}{photo_id}"


def cached_media_key(photo_id: int) -> str:
    return f"{CACHED_MEDIA}{photo_id}"


def cached_photo_keys(photo_id: int) -> list[str]:
    """Every cache entry made from a photo's row: what its writers invalidate."""
    return [cached_photo_key(photo_id), cached_media_key(photo_id)]


def feed_key(user_id: int) -> str:
    return f"{FEED}{user_id}"


def posts_key(user_id: int) -> str:
    return f"{POSTS}{user_id}"


def following_key(user_id: int) -> str:
    return f"{FOLLOWING}{user_id}"


def celebrities_key(user_id: int) -> str:
    return f"{CELEBRITIES}{user_id}"


def follows_clock_key(user_id: int) -> str:
    """When the user's follows last changed."""
    return f"follows:{user_id}{CLOCK_SUFFIX}"


def rendered_media_key(photo_id: int) -> str:
    return f"{RENDERED_MEDIA}{photo_id}"


def rendered_user_key(user_id: int) -> str:
    return f"{RENDERED_USER}{user_id}"


def fragment_key(fragment_hash: str) -> str:
    return f"{FRAGMENT}{fragment_hash}"


def liked_key(user_id: int) -> str:
    return f"{LIKED}{user_id}"


def liked_clock_key(user_id: int) -> str:
    return f"{LIKED}{user_id}{CLOCK_SUFFIX}"


def relations_key(user_id: int) -> str:
    return f"{RELATIONS}{user_id}"


def relations_clock_key(user_id: int) -> str:
    return f"{RELATIONS}{user_id}{CLOCK_SUFFIX}"


def private_key(user_id: int) -> str:
    return f"{PRIVATE}{user_id}"


def private_clock_key(user_id: int) -> str:
    return f"{PRIVATE}{user_id}{CLOCK_SUFFIX}"


def user_media_key(user_id: int | str) -> str:
    return f"{USER_MEDIA}{user_id}"


def tag_media_key(name: str) -> str:
    return f"{TAG_MEDIA}{name}"


def location_media_key(location_id: int) -> str:
    return f"{LOCATION_MEDIA}{location_id}"


def liked_media_key(user_id: int) -> str:
    return f"{LIKED_MEDIA}{user_id}"


def list_clock_key(list_key: str) -> str:
    """When a media list's members last changed (app.platform.clocks)."""
    return f"{list_key}{CLOCK_SUFFIX}"


def rendered_profile_key(user_id: int) -> str:
    return f"{RENDERED_PROFILE}{user_id}"


def activity_entry_key(activity_id: int) -> str:
    return f"{ACTIVITY_ENTRY}{activity_id}"


def comments_list_key(photo_id: int) -> str:
    return f"{COMMENTS_LIST}{photo_id}"


def likes_list_key(photo_id: int) -> str:
    return f"{LIKES_LIST}{photo_id}"


def photo_list_keys(photo_id: int) -> list[str]:
    """The warm lists of a photo: what its like and comment writers forget."""
    return [comments_list_key(photo_id), likes_list_key(photo_id)]


def follow_list_keys(user_id: int) -> list[str]:
    """The warm lists of a user's follows either way: what follow changes forget."""
    return [f"{FOLLOWED_BY_LIST}{user_id}", f"{FOLLOWS_LIST}{user_id}", f"{REQUESTED_BY_LIST}{user_id}"]


def activity_key(user_id: int) -> str:
    return f"{ACTIVITY}{user_id}"


def activity_seen_key(user_id: int) -> str:
    return f"{ACTIVITY_SEEN}{user_id}"


def push_claimed_key(activity_id: int) -> str:
    return f"{PUSH_CLAIMED}{activity_id}"


def token_cache_key(token_hash: str) -> str:
    return f"{TOKEN}{token_hash}"


def token_clock_key(token_hash: str) -> str:
    return f"{TOKEN_CLOCK}{token_hash}"


def search_photos_day_key(day: int) -> str:
    """`day`: days since the Unix epoch (UTC)."""
    return f"{SEARCH_PHOTOS_DAY}{day}"


def search_tag_prefix_key(prefix: str) -> str:
    return f"{SEARCH_TAG_PREFIX}{prefix}"


# -- linked accounts (app.sharing) ------------------------------------------------------
OAUTH_STATE = "oauth-state:"  # string (JSON): a connect flow's user, network and request token, single-use


def oauth_state_key(state: str) -> str:
    return f"{OAUTH_STATE}{state}"
