"""The search queue: the index follows the database (app/search/service.py).

index_photo is in a ready photo's downstream group (app/media/pipeline.py,
through the outbox); the others redo an after-commit step that failed
(app/platform/changes.py) or follow a delete or a change of an account's
privacy. Each reads the rows again, so running twice or late is harmless;
each is retried while Redis, Solr or the database does not answer.
"""
from __future__ import annotations

from celery import shared_task
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError

from app.search.interface import SearchUnavailable
from app.services import services
from app.worker import ContextTask


class SearchTask(ContextTask):
    abstract = True
    autoretry_for = (RedisError, SearchUnavailable, OperationalError, ConnectionError, TimeoutError)
    max_retries = None  # the outbox marked the row delivered: giving up would lose the update
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True


@shared_task(base=SearchTask, name="tasks.search.index_photo")
def index_photo(photo_id: int) -> None:
    services.search.index_photo(photo_id)


@shared_task(base=SearchTask, name="tasks.search.remove_photo")
def remove_photo(photo_id: int) -> None:
    services.search.remove_photo(photo_id)


@shared_task(base=SearchTask, name="tasks.search.index_tags")
def index_tags(tag_ids: list[int]) -> None:
    services.search.index_tags(tag_ids)


@shared_task(base=SearchTask, name="tasks.search.index_users")
def index_users(user_ids: list[int]) -> None:
    services.search.index_users(user_ids)


@shared_task(base=SearchTask, name="tasks.search.reindex_owner")
def reindex_owner(user_id: int) -> None:
    services.search.reindex_owner(user_id)
