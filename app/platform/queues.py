"""How much work waits in the broker: messages per queue, on RabbitMQ or Redis.

A passive queue_declare asks without creating anything: RabbitMQ answers the
queue's message count, kombu's Redis transport the list's LLEN. A queue no
worker has declared yet holds nothing (RabbitMQ refuses the passive declare,
Redis has no list until a message is pushed).
"""
from __future__ import annotations

from celery import Celery
from kombu.exceptions import ChannelError, OperationalError

try:  # py-amqp's "404 NOT_FOUND" for a queue nobody declared
    from amqp.exceptions import NotFound as AmqpNotFound
except ImportError:  # pragma: no cover - amqp is a kombu dependency
    AmqpNotFound = ChannelError


def queue_names(celery: Celery) -> list[str]:
    return [queue.name for queue in celery.conf.task_queues or ()]


def queue_depths(celery: Celery, names: list[str] | None = None) -> dict[str, int]:
    """Messages waiting (not yet delivered to a worker) in each queue. Raises
    kombu's OperationalError when the broker cannot be reached."""
    depths = {}
    with celery.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, interval_start=0)  # a scrape or a probe does not wait
        for name in names or queue_names(celery):
            # A refused passive declare closes the channel on RabbitMQ: one channel per queue.
            channel = connection.channel()
            try:
                depths[name] = channel.queue_declare(queue=name, passive=True).message_count
            except (ChannelError, AmqpNotFound):
                depths[name] = 0
            finally:
                try:
                    channel.close()
                except (OperationalError, ChannelError, OSError):
                    pass
    return depths
