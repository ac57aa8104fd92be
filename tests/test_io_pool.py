"""The io queue (issue 14, item 7): work that waits on remote APIs runs on a gevent pool
of its own, so a slow remote API never holds up a photo's processing.

Two REAL workers, laid out as `make run` and the Procfile lay them out: one prefork
worker for media, feed, search and default, one gevent worker for io. A subscriber's
callback (tests/callbacks.py) holds every POST open, unanswered, the way a slow
provider does: the photos still reach `ready`, while the io worker keeps several
callbacks waiting at once on greenlets (one prefork child could hold only one).
"""
from __future__ import annotations

import dataclasses
import io

import pytest

from tests.callbacks import CallbackServer
from tests.support import Shutter
from tests.test_feeds import JPEG
from tests.test_pipeline_faults import wait_for_status, wait_until
from tests.test_subscriptions import LOOPBACK, subscribed

PHOTOS = 3


# Callbacks on loopback allowed; their answer is waited for longer than the test holds it.
SLOW_SUBSCRIBER = {"subscription_callback_allowed_networks": LOOPBACK, "subscription_callback_timeout_seconds": 90}


@pytest.fixture
def slow_settings(settings):
    return dataclasses.replace(settings, **SLOW_SUBSCRIBER)


@pytest.fixture
def app(make_app):
    return make_app(**SLOW_SUBSCRIBER)


@pytest.fixture
def shutter(app) -> Shutter:
    return Shutter(app.test_client())


def test_a_slow_subscriber_does_not_delay_a_photos_ready(shutter, app, slow_settings, worker_process):
    alice = shutter.account("alice")
    with CallbackServer() as callback:
        subscribed(shutter, object="user", callback_url=callback.url())
        callback.hold()
        media = worker_process(slow_settings, queues="media,feed,search,default").start()
        io_pool = worker_process(slow_settings, queues="io", pool="gevent", concurrency=20).start()
        photo_ids = []
        for n in range(PHOTOS):
            response = shutter.post("/v1/media/upload", alice, files={"photo": (io.BytesIO(JPEG), f"{n}.jpg")})
            assert response.status_code == 202, response.json
            photo_ids.append(int(response.json["data"]["id"].split("_")[0]))

        # Every photo's callback is in flight at once, on the io worker's greenlets...
        wait_until(lambda: callback.waiting == PHOTOS, timeout=90, what="every callback held open", worker=io_pool)
        # ...and meanwhile every photo is ready: the media worker never waited on them.
        for photo_id in photo_ids:
            wait_for_status(app, photo_id, "ready", worker=media)
        assert callback.waiting == PHOTOS and callback.deliveries == []

        callback.release()
        wait_until(lambda: len(callback.deliveries) == PHOTOS, timeout=60, what="the deliveries", worker=io_pool)
    assert "concurrency: 20 (gevent)" in io_pool.log()
