"""The after-commit steps that every writer of a photo or a user shares: the
cached and rendered copies go (app.platform.aftercommit runs them).

The cache and the rendered feed are reached through the session's services
container, not imported: likes and comments (engagement), the pipeline and
profile edits all call these, and none of them may import the feeds.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from app.platform import outbox
from app.platform.aftercommit import after_commit
from app.platform.keys import cached_photo_keys, cached_user_key

# The tasks that redo a shared step that failed (tasks/feeds.py): a late
# tombstone is harmless, its readers load the row again.
INVALIDATE_TASK = "tasks.feeds.invalidate_cache"
FORGET_PHOTOS_TASK = "tasks.feeds.forget_photos"
FORGET_USERS_TASK = "tasks.feeds.forget_users"
FORGET_PROFILES_TASK = "tasks.feeds.forget_profiles"
FORGET_FOLLOW_LISTS_TASK = "tasks.feeds.forget_follow_lists"
LIKED_TASK = "tasks.feeds.liked_changed"
# The warm media lists' (app.reads.lists): each reads the rows again, so a late run is harmless.
PHOTO_LISTED_TASK = "tasks.feeds.photo_listed"
LIKE_LISTED_TASK = "tasks.feeds.like_listed"
# The search index's (tasks/search.py): each reads the rows again, so a late or repeated run is harmless.
INDEX_TAGS_TASK = "tasks.search.index_tags"
INDEX_USERS_TASK = "tasks.search.index_users"
REINDEX_OWNER_TASK = "tasks.search.reindex_owner"
# The social graph's warm copy (app.social.graph): a missed drop would be a leak, so these are outbox rows.
RELATIONS_TASK = "tasks.feeds.relations_changed"
PRIVACY_TASK = "tasks.feeds.privacy_changed"


def photo_changed(session: Session, photo_id: int) -> None:
    """Its likes, comments or existence changed: the cached and rendered copies go.

    Without the retry a failed invalidate would leave the old photo to readers
    for the rest of its TTL (cache.DEFAULT_TTL, an hour, on memcached), and a
    failed forget the old rendered media (its counts) to warm feed reads for
    rendered.MEDIA_TTL (ten minutes); they still do if the task is lost too.
    """
    unit = after_commit(session)
    svc = unit.services
    unit.best_effort("cache.invalidate", svc.cache.invalidate, retry_as=INVALIDATE_TASK, keys=cached_photo_keys(photo_id))
    unit.best_effort("rendered.forget_photos", svc.rendered.forget_photos, retry_as=FORGET_PHOTOS_TASK,
                     photo_ids=[photo_id])


def user_changed(session: Session, user_id: int) -> None:
    """Their name or picture changed: cached summaries and rendered ones go
    (as for photos; a rendered summary would stay for rendered.USER_TTL, an hour)."""
    unit = after_commit(session)
    svc = unit.services
    unit.best_effort("cache.invalidate", svc.cache.invalidate, retry_as=INVALIDATE_TASK, keys=[cached_user_key(user_id)])
    unit.best_effort("rendered.forget_users", svc.rendered.forget_users, retry_as=FORGET_USERS_TASK,
                     user_ids=[user_id])
    user_indexed(session, user_id)


# The after-commit unit's state: the users whose full objects this transaction changed.
PROFILES_CHANGED = "profiles_changed"


def profiles_changed(session: Session, user_ids) -> None:
    """What their full user objects show changed (a profile field, a count): the
    rendered ones go (app.reads.profiles; they would show it for an hour), once per
    transaction for all of them."""
    unit = after_commit(session)
    changed = unit.state.get(PROFILES_CHANGED)
    if changed is None:
        changed = unit.state[PROFILES_CHANGED] = []
        unit.best_effort("profiles.forget", lambda user_ids: unit.services.profiles.forget(user_ids),
                         retry_as=FORGET_PROFILES_TASK, user_ids=changed)
    changed.extend(i for i in user_ids if i not in changed)


def follow_lists_changed(session: Session, user_ids) -> None:
    """Follows or follow requests between these users changed: their warm lists of
    followers, followees and requests (app.reads.social) go, as rendered media do."""
    user_ids = sorted(set(user_ids))
    unit = after_commit(session)
    unit.best_effort("social_lists.forget_follow_lists", unit.services.social_lists.forget_follow_lists,
                     retry_as=FORGET_FOLLOW_LISTS_TASK, user_ids=user_ids)


def liked_changed(session: Session, user_id: int, photo_id: int, liked: bool) -> None:
    """A like or unlike: liked:{user} follows it. That set is rebuilt only once it
    is gone, and each like renews its TTL: a miss would stay, so the task redoes
    it (from the table) if Redis fails."""
    unit = after_commit(session)
    unit.best_effort("rendered.liked", unit.services.rendered.liked, retry_as=LIKED_TASK,
                     user_id=user_id, photo_id=photo_id, liked=liked)


def photo_listed(session: Session, photo_id: int, owner_id: int, tags: list[str], location_id: int | None,
                 listed: bool) -> None:
    """A photo was published (listed) or a published one deleted: the warm lists of its
    owner, tags and location follow. They are rebuilt only once gone, so a missed patch
    would stay: the task redoes it (from the table) if Redis fails."""
    unit = after_commit(session)
    unit.best_effort("lists.photo_listed", unit.services.lists.photo_listed, retry_as=PHOTO_LISTED_TASK,
                     photo_id=photo_id, owner_id=owner_id, tags=list(tags), location_id=location_id, listed=listed)


def like_listed(session: Session, user_id: int, like_id: int, photo_id: int, liked: bool) -> None:
    """A like or unlike: the liker's warm list of liked media follows (as photo_listed)."""
    unit = after_commit(session)
    unit.best_effort("lists.like_listed", unit.services.lists.like_listed, retry_as=LIKE_LISTED_TASK,
                     user_id=user_id, like_id=like_id, photo_id=photo_id, liked=liked)


def user_indexed(session: Session, user_id: int) -> None:
    """A new user, or a new full name: the search index finds them by it."""
    unit = after_commit(session)
    unit.best_effort("search.index_users", unit.services.search.index_users, retry_as=INDEX_USERS_TASK,
                     user_ids=[user_id])


def tags_counted(session: Session, tag_ids) -> None:
    """Tags' media_count changed (a photo published or deleted): tag search ranks by it."""
    tag_ids = sorted(tag_ids)
    if not tag_ids:
        return
    unit = after_commit(session)
    unit.best_effort("search.index_tags", unit.services.search.index_tags, retry_as=INDEX_TAGS_TASK,
                     tag_ids=tag_ids)


def owner_visibility_changed(session: Session, user_id: int) -> None:
    """An account turned private or public: warm reads ask the database again, and its
    photos' search documents say so again, on the search queue (results are filtered
    by the database at once either way)."""
    unit = after_commit(session)
    unit.must_happen(session, outbox.task(PRIVACY_TASK, user_id=user_id),
                     now=lambda: unit.services.graph.privacy_changed(user_id))
    unit.must_happen(session, outbox.task(REINDEX_OWNER_TASK, user_id=user_id))


def relations_changed(session: Session, user_ids) -> None:
    """A follow request, a block or an unblock between these users: warm reads of
    either (app.social.graph) ask the database again."""
    user_ids = sorted(set(user_ids))
    unit = after_commit(session)
    unit.must_happen(session, outbox.task(RELATIONS_TASK, user_ids=user_ids),
                     now=lambda: unit.services.graph.relations_changed(user_ids))
