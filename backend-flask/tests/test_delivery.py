"""BoundedSender: flush delivers what is queued and then stops, failed items are counted, and
RetryLater pauses the sender without holding flush past its deadline."""

from __future__ import annotations

import logging
import threading
import time

from cruddur.telemetry.core.delivery import BoundedSender, RetryLater
from cruddur.telemetry.core.status import IntegrationStatus
from tests.support.waiting import wait_for

log = logging.getLogger(__name__)


class Recorder:
    """A send function that records each item (and on which thread), failing on request."""

    def __init__(self, fail=None):
        self.items: list = []
        self.fail = fail
        self.threads: set[int] = set()

    def __call__(self, item):
        self.threads.add(threading.get_ident())
        self.items.append(item)
        if self.fail is not None:
            raise self.fail


def sender(send, **kwargs):
    status = IntegrationStatus("test", True, "test")
    return BoundedSender("test", send, status, log, **kwargs), status


def test_flush_delivers_what_is_queued_on_one_thread_then_stops():
    send = Recorder()
    queue, status = sender(send, max_queue=100)
    for item in range(25):
        queue.submit(item)
    queue.flush(5.0)
    assert send.items == list(range(25)) and len(send.threads) == 1
    assert (status.sent, status.dropped, status.failed) == (25, 0, 0)
    assert queue.submit(25) is False and status.dropped == 1  # closed after the flush


def test_a_failed_item_is_counted_and_dropped():
    send = Recorder(fail=RuntimeError("boom"))
    queue, status = sender(send)
    for item in range(5):
        queue.submit(item)
    wait_for(lambda: status.dropped == 5, 5)
    assert (status.sent, status.failed, status.status()["last_error"]) == (0, 5, "RuntimeError")


def test_retry_later_pauses_the_sender_and_flush_does_not_wait_past_its_deadline():
    send = Recorder(fail=RetryLater(60))
    queue, status = sender(send)
    queue.submit(1)
    wait_for(lambda: status.failed == 1, 5)
    queue.submit(2)
    started = time.monotonic()
    queue.flush(1.0)
    assert time.monotonic() - started < 5.0  # not the 60 s asked for, and room for a loaded machine
    assert len(send.items) == 1 and status.dropped == 2
