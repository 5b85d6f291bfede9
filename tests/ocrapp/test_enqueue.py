"""The read is enqueued on commit by task object, and lands on the "ocr" queue (real Redis)."""

import pytest

from ocrapp import services
from tests.images import label_png
from workers.tasks import read_capture

pytestmark = pytest.mark.django_db(transaction=True)


def test_capture_create_enqueues_read_capture_on_the_ocr_queue(user, product_type, station):
    from workers.celery import app

    with app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_purge("ocr")
        capture, _ = services.capture_create(
            user=user,
            image_bytes=label_png(["S/N: Q1"]),
            product_type=product_type,
            station=station,
        )
        message = channel.basic_get("ocr", no_ack=True)
        assert message is not None, "nothing was published to the ocr queue"
        assert message.headers["task"] == read_capture.name == "workers.tasks.read_capture"
        args, kwargs, _embed = message.decode()
        assert (args, kwargs) == ([str(capture.pk)], {})
        assert channel.basic_get("ocr", no_ack=True) is None  # exactly one message


def test_retries_of_read_capture_are_routed_to_the_ocr_queue():
    """self.retry() publishes through the same router, so retries cannot land on "default"."""
    from workers.celery import app

    assert app.amqp.router.route({}, read_capture.name)["queue"].name == "ocr"
