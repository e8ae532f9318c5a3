"""The Rollbar receiver takes items from the real pyrollbar client and fails like api.rollbar.com."""

import copy
import gzip
import json
import time

import pytest
import requests
import rollbar

from tests.support.rollbar_receiver import RollbarReceiver, item_message


@pytest.fixture
def report_to():
    """``report_to(receiver)`` points pyrollbar at a receiver (blocking handler); settings are restored after."""
    saved = copy.deepcopy(rollbar.SETTINGS), rollbar._initialized

    def configure(receiver, timeout=2):
        # pyrollbar ignores a second init() (keeping the first token); each test wants a fresh one.
        rollbar._initialized = False
        rollbar.init("test-token", environment="test", endpoint=receiver.endpoint, handler="blocking", timeout=timeout)

    yield configure
    rollbar.SETTINGS, rollbar._initialized = saved


def test_message_and_exception_items_arrive(rollbar_receiver, report_to):
    assert rollbar_receiver.endpoint.endswith("/api/1/")
    report_to(rollbar_receiver)
    rollbar.report_message("Hello World!", "warning", extra_data={"trace_id": "ab" * 16})
    try:
        raise KeyError("missing")
    except KeyError:
        rollbar.report_exc_info()

    message, error = rollbar_receiver.wait_for_items(count=2)
    assert message["level"] == "warning"
    assert item_message(message) == "Hello World!"
    assert message["body"]["message"]["trace_id"] == "ab" * 16
    assert message["environment"] == "test"
    assert error["level"] == "error"
    assert item_message(error) == "KeyError: 'missing'"
    assert all(p["access_token"] == "test-token" for p in rollbar_receiver.payloads())
    assert all(h["x-rollbar-access-token"] == "test-token" for h in rollbar_receiver.headers())


def test_reply_has_rollbars_shape_and_batches_and_gzip_are_understood(rollbar_receiver):
    item = {"access_token": "t", "data": {"uuid": "1234", "body": {"message": {"body": "one"}}}}
    reply = requests.post(rollbar_receiver.endpoint + "item/", json=item, timeout=5)
    assert reply.status_code == 200
    assert reply.json() == {"err": 0, "result": {"id": None, "uuid": "1234"}}

    batch = [{"data": {"body": {"message": {"body": text}}}} for text in ("two", "three")]
    reply = requests.post(
        rollbar_receiver.endpoint + "item_batch/",
        data=gzip.compress(json.dumps(batch).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=5,
    )
    assert reply.status_code == 200 and reply.json()["err"] == 0
    assert [item_message(i) for i in rollbar_receiver.items()] == ["one", "two", "three"]

    assert requests.post(rollbar_receiver.endpoint + "item/", data=b"{nope", timeout=5).status_code == 400
    assert requests.post(rollbar_receiver.endpoint + "item/", json={"no": "data"}, timeout=5).status_code == 422
    assert requests.post(rollbar_receiver.endpoint + "deploy/", json={}, timeout=5).status_code == 404
    assert rollbar_receiver.item_count == 3


@pytest.mark.parametrize(("mode", "status"), [("status500", 500), ("status429", 429)])
def test_error_statuses_reject_items_like_rollbar(report_to, mode, status):
    with RollbarReceiver(mode=mode, retry_after=7) as receiver:
        report_to(receiver)
        rollbar.report_message("lost", "error")  # pyrollbar logs the failure; it must not raise
        assert receiver.item_count == 0
        assert receiver.counts_by_mode() == {mode: 1}
        reply = requests.post(receiver.endpoint + "item/", json={"data": {}}, timeout=5)
        assert reply.status_code == status
        assert reply.json()["err"] == 1
        if status == 429:
            assert reply.headers["Retry-After"] == "7"
        receiver.mode = "ok"
        rollbar.report_message("delivered", "error")
        assert [item_message(i) for i in receiver.items()] == ["delivered"]


def test_refuse_and_blackhole_cost_the_client_at_most_its_timeout(report_to):
    with RollbarReceiver(mode="refuse") as receiver:
        report_to(receiver, timeout=0.5)
        rollbar.report_message("refused", "error")
        assert receiver.request_count == 0
        receiver.mode = "blackhole"
        started = time.monotonic()
        rollbar.report_message("blackholed", "error")
        assert 0.4 <= time.monotonic() - started < 5
        assert receiver.counts_by_mode() == {"blackhole": 1}
        assert receiver.items() == []
