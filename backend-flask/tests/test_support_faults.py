"""Each fault mode of the stand-ins fails the way a real outage does, seen through real clients."""

import socket
import threading
import time

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.faulty_http import FaultyHTTPServer, closed_port
from tests.support.otlp_receiver import OTLPReceiver
from tests.support.waiting import wait_for


def finished_span():
    """One real finished SDK span to export by hand."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("faults").start_as_current_span("probe"):
        pass
    return memory.get_finished_spans()


def test_refuse_then_recover_on_the_same_url():
    with OTLPReceiver(mode="refuse") as receiver:
        url = receiver.traces_url
        with pytest.raises(requests.ConnectionError):
            requests.post(url, data=b"", timeout=2)
        receiver.mode = "ok"
        assert receiver.traces_url == url
        assert requests.post(url, data=b"", timeout=2).status_code == 200
        receiver.mode = "refuse"
        with pytest.raises(requests.ConnectionError):
            requests.post(url, data=b"", timeout=2)
        assert receiver.counts_by_mode() == {"ok": 1}


def test_refuse_cuts_open_keep_alive_connections():
    with OTLPReceiver() as receiver, requests.Session() as session:
        assert session.post(receiver.traces_url, data=b"", timeout=2).status_code == 200
        receiver.mode = "refuse"
        # The pooled connection is dead and a new one is refused: no answer either way.
        with pytest.raises(requests.ConnectionError):
            session.post(receiver.traces_url, data=b"", timeout=2)


def test_blackhole_times_the_client_out_and_never_blocks_stop():
    receiver = OTLPReceiver(mode="blackhole").start()
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.post(receiver.traces_url, data=b"", timeout=0.5)
    assert receiver.counts_by_mode() == {"blackhole": 1}

    held = socket.create_connection(("127.0.0.1", receiver.port), timeout=5)
    held.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    wait_for(lambda: receiver.request_count == 2)
    stopping = time.monotonic()
    receiver.stop()
    assert time.monotonic() - stopping < 3, "stop() waited for a blackholed connection"
    # The held connection ends without any response bytes.
    held.settimeout(5)
    assert held.recv(100) == b""
    held.close()
    assert time.monotonic() - started < 10


def test_sdk_exporter_gives_up_on_blackhole_within_its_timeout():
    with OTLPReceiver(mode="blackhole") as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.traces_url, timeout=1)
        started = time.monotonic()
        assert exporter.export(finished_span()) is SpanExportResult.FAILURE
        assert time.monotonic() - started < 5
        assert receiver.spans() == []


def test_slow_answers_after_the_delay_and_keeps_the_data():
    with OTLPReceiver(mode="slow", delay=0.4) as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.traces_url, timeout=5)
        started = time.monotonic()
        assert exporter.export(finished_span()) is SpanExportResult.SUCCESS
        assert time.monotonic() - started >= 0.4
        assert [s["name"] for s in receiver.spans()] == ["probe"]
        with pytest.raises(requests.ReadTimeout):
            requests.post(receiver.traces_url, data=b"", timeout=0.1)


def test_status500_rejects_and_stores_nothing():
    with OTLPReceiver(mode="status500") as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.traces_url, timeout=2)
        assert exporter.export(finished_span()) is SpanExportResult.FAILURE
        assert receiver.spans() == []
        assert receiver.counts_by_mode()["status500"] >= 1
        response = requests.post(receiver.traces_url, data=b"", timeout=2)
        assert response.status_code == 500


def test_status429_sends_retry_after_which_the_sdk_honours():
    with OTLPReceiver(mode="status429", retry_after=30) as receiver:
        response = requests.post(receiver.traces_url, data=b"", timeout=2)
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "30"
        receiver.reset()
        exporter = OTLPSpanExporter(endpoint=receiver.traces_url, timeout=3)
        started = time.monotonic()
        assert exporter.export(finished_span()) is SpanExportResult.FAILURE
        # Retry-After (30 s) is beyond the exporter's 3 s deadline: it must not retry at all.
        assert receiver.request_count == 1
        assert time.monotonic() - started < 3


def test_mode_changes_are_safe_under_concurrent_traffic():
    with FaultyHTTPServer() as server:
        stop = threading.Event()
        errors = []

        def hammer():
            while not stop.is_set():
                try:
                    requests.get(server.url + "/x", timeout=0.3)
                except requests.RequestException:
                    pass
                except Exception as error:  # anything else is a bug in the server
                    errors.append(error)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        for mode in ["refuse", "ok", "blackhole", "status500", "refuse", "status429", "slow", "ok"] * 2:
            server.mode = mode
            time.sleep(0.02)
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        assert not errors
        assert requests.get(server.url + "/x", timeout=2).status_code == 404


def test_unknown_mode_is_rejected_and_closed_port_refuses():
    with pytest.raises(ValueError):
        FaultyHTTPServer(mode="flaky")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{closed_port()}/", timeout=2)


def test_small_requests_one_after_another_on_one_connection_are_not_held_by_nagle():
    # Without TCP_NODELAY on the stand-in's side an answer's body waits for the client's delayed ACK
    # of its headers: 44 ms a request, 100 requests in about 4.4 s (0.8 ms a request with it).
    with OTLPReceiver() as receiver, requests.Session() as session:

        def export_json():
            headers = {"Content-Type": "application/json"}
            return session.post(receiver.traces_url, data=b"{}", headers=headers, timeout=2)

        assert export_json().content == b"{}"  # connected, and the answer has a body
        started = time.monotonic()
        for _ in range(100):
            assert export_json().status_code == 200
        assert time.monotonic() - started < 2.0
