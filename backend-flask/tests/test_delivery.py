"""BoundedSender in batch mode: full batches go at once, partial ones after the linger, flush hurries,
rejected and failed items are counted, and the hook runs first on the sender thread."""

from __future__ import annotations

import logging
import threading
import time

from cruddur.telemetry.core.delivery import BoundedSender, RetryLater
from cruddur.telemetry.core.status import IntegrationStatus
from tests.support.waiting import wait_for

log = logging.getLogger(__name__)


class Recorder:
    """A send function that records each batch (and when), rejecting or failing on request."""

    def __init__(self, reject=0, fail=None):
        self.batches: list[tuple[float, list]] = []
        self.reject = reject
        self.fail = fail
        self.threads: set[int] = set()

    def __call__(self, items):
        self.threads.add(threading.get_ident())
        self.batches.append((time.monotonic(), list(items)))
        if self.fail is not None:
            raise self.fail
        return self.reject


def sender(send, **kwargs):
    status = IntegrationStatus("test", True, "test")
    return BoundedSender("test", send, status, log, **kwargs), status


def test_a_full_batch_goes_at_once_and_a_partial_one_after_the_linger():
    send = Recorder()
    queue, status = sender(send, max_queue=100, max_batch=10, linger=1.0)
    started = time.monotonic()
    for item in range(25):
        queue.submit(item)
    wait_for(lambda: len(send.batches) >= 3, 5)
    (_t1, first), (t2, second), (t3, third) = send.batches
    assert (first, second, third) == (list(range(10)), list(range(10, 20)), list(range(20, 25)))
    assert t2 - started < 0.5  # full batches did not wait
    assert t3 - started >= 0.9  # the remainder waited for the linger
    wait_for(lambda: status.sent == 25, 2)
    assert (status.dropped, status.failed) == (0, 0)


def test_flush_sends_a_partial_batch_without_waiting_for_the_linger():
    send = Recorder()
    queue, status = sender(send, max_batch=100, linger=30.0)
    for item in range(3):
        queue.submit(item)
    started = time.monotonic()
    queue.flush(5.0)
    assert time.monotonic() - started < 2.0
    assert [items for _, items in send.batches] == [[0, 1, 2]] and status.sent == 3
    assert queue.submit(4) is False and status.dropped == 1  # closed after the flush


def test_rejected_items_are_dropped_and_failures_count_the_whole_batch():
    send = Recorder(reject=2)
    queue, status = sender(send, max_batch=5, linger=0.05)
    for item in range(5):
        queue.submit(item)
    wait_for(lambda: status.sent + status.dropped == 5, 5)
    assert (status.sent, status.dropped, status.failed) == (3, 2, 0)

    send = Recorder(fail=RuntimeError("boom"))
    queue, status = sender(send, max_batch=5, linger=0.05)
    for item in range(5):
        queue.submit(item)
    wait_for(lambda: status.dropped == 5, 5)
    assert (status.sent, status.failed, status.status()["last_error"]) == (0, 1, "RuntimeError")


def test_retry_later_pauses_the_sender_and_flush_does_not_wait_past_its_deadline():
    send = Recorder(fail=RetryLater(60))
    queue, status = sender(send, max_batch=5, linger=0.05)
    queue.submit(1)
    wait_for(lambda: status.failed == 1, 5)
    queue.submit(2)
    started = time.monotonic()
    queue.flush(1.0)
    assert time.monotonic() - started < 1.5
    assert len(send.batches) == 1 and status.dropped == 2


def test_on_start_runs_first_on_the_sender_thread_and_its_failure_is_not_fatal():
    calls = []
    send = Recorder()

    def prepare():
        calls.append(threading.get_ident())
        raise OSError("not reachable yet")

    queue, status = sender(send, max_batch=2, linger=0.05, on_start=prepare)
    queue.submit(1)
    queue.submit(2)
    wait_for(lambda: status.sent == 2, 5)
    assert calls and set(calls) == send.threads
    assert queue.on_sender_thread() is False
