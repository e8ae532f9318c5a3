"""The X-Ray listener reads what the real SDK's UDPEmitter sends, and answers its sampling connector."""

import json
import socket
import threading
import time

import pytest
from aws_xray_sdk.core import AWSXRayRecorder
from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter
from aws_xray_sdk.core.models.segment import Segment
from aws_xray_sdk.core.sampling.connector import ServiceConnector

from tests.support.waiting import wait_for
from tests.support.xray_listener import (
    XRayListener,
    flatten,
    otel_trace_id,
    parse_datagram,
    sampling_rule,
    xray_trace_id,
)

RULE = sampling_rule("cruddur", 9000, 0.1, 5, service="backend-flask")


def recorder_for(listener, streaming_threshold=100):
    """A recorder of its own (not the global one) sending to ``listener``."""
    recorder = AWSXRayRecorder()
    recorder.configure(
        daemon_address=listener.daemon_address,
        sampling=False,
        context_missing="LOG_ERROR",
        streaming_threshold=streaming_threshold,
        service="backend-flask",
    )
    return recorder


def test_segment_with_nested_subsegments(xray_listener):
    recorder = recorder_for(xray_listener)
    segment = recorder.begin_segment("backend-flask")
    recorder.put_annotation("handle", "andrewbrown")
    recorder.begin_subsegment("home-activities")
    recorder.put_metadata("result_length", 5, "app")
    recorder.begin_subsegment("sqlite")
    recorder.end_subsegment()
    recorder.end_subsegment()
    recorder.end_segment()

    (received,) = xray_listener.wait_for_segments()
    assert received["trace_id"] == segment.trace_id
    assert received["id"] == segment.id
    assert received["name"] == "backend-flask"
    assert received["annotations"] == {"handle": "andrewbrown"}
    assert [e["name"] for e in flatten(received)] == ["backend-flask", "home-activities", "sqlite"]
    assert [s["name"] for s in xray_listener.subsegments()] == ["home-activities", "sqlite"]
    assert xray_listener.subsegments()[0]["metadata"] == {"app": {"result_length": 5}}
    assert len(xray_listener.entities()) == 3
    assert xray_listener.documents_for_trace(segment.trace_id) == [received]


def test_streamed_subsegments_arrive_as_their_own_documents(xray_listener):
    recorder = recorder_for(xray_listener, streaming_threshold=1)
    segment = recorder.begin_segment("backend-flask")
    for index in range(3):
        recorder.begin_subsegment(f"query-{index}")
        recorder.end_subsegment()
    recorder.end_segment()

    xray_listener.wait_for_segments()
    documents = xray_listener.documents()
    streamed = [d for d in documents if d.get("type") == "subsegment"]
    # Past the threshold, finished subsegments leave the segment and travel as their own documents.
    assert streamed and {d["name"] for d in streamed} <= {"query-0", "query-1", "query-2"}
    assert all(d["trace_id"] == segment.trace_id and d["parent_id"] == segment.id for d in streamed)
    assert len(xray_listener.segments()) == 1
    assert sorted(s["name"] for s in xray_listener.subsegments()) == ["query-0", "query-1", "query-2"]


def test_trace_id_conversions_round_trip():
    otel = "5b8efff798038103d269b633813fc60c"
    assert xray_trace_id(otel) == "1-5b8efff7-98038103d269b633813fc60c"
    assert otel_trace_id(xray_trace_id(otel.upper())) == otel


def test_malformed_datagrams_are_kept_apart(xray_listener):
    emitter = UDPEmitter(xray_listener.daemon_address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"no header", b'{"format":"xml","version":1}\n{}', b'{"format":"json","version":1}\n{oops'):
            sock.sendto(junk, ("127.0.0.1", xray_listener.port))
    emitter.send_entity(Segment("after-junk"))
    xray_listener.wait_for_segments()
    assert len(xray_listener.malformed()) == 3
    assert [d["name"] for d in xray_listener.documents()] == ["after-junk"]
    with pytest.raises(ValueError):
        parse_datagram(b"no header")
    assert parse_datagram(b'{"format":"json","version":1}\n{"a":1}') == ({"format": "json", "version": 1}, {"a": 1})
    assert len(xray_listener.rejected()) == 3
    xray_listener.reset()


def test_refuse_closes_the_port_and_ok_rebinds_it():
    with XRayListener() as listener:
        port = listener.port
        emitter = UDPEmitter(listener.daemon_address)
        listener.mode = "refuse"
        emitter.send_entity(Segment("lost"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", port))  # nobody holds the port while refusing
        listener.mode = "ok"
        assert listener.port == port
        emitter.send_entity(Segment("delivered"))
        listener.wait_for_segments()
        assert [d["name"] for d in listener.documents()] == ["delivered"]
        listener.mode = "drop"
        emitter.send_entity(Segment("dropped"))
        wait_for(lambda: listener.datagram_count == 2)
        assert [d["name"] for d in listener.documents()] == ["delivered"]


def test_stop_returns_at_once_while_datagrams_keep_arriving():
    """The reader never waits for the lock stop() holds while it joins the reader."""
    listener = XRayListener().start()
    emitter, sending = UDPEmitter(listener.daemon_address), threading.Event()

    def flood():
        while not sending.is_set():
            emitter.send_entity(Segment("flood"))

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    wait_for(lambda: listener.datagram_count > 100)
    started = time.monotonic()
    listener.stop()
    stopped_in = time.monotonic() - started
    sending.set()
    thread.join(5)
    assert stopped_in < 2.0  # the reader's join gives up after 5 s


def test_sampling_api_answers_the_sdk_connector():
    with XRayListener(sampling_rules=[RULE]) as listener:
        assert listener.sampling.port == listener.port
        connector = ServiceConnector()
        connector.setup_xray_client(listener.host, listener.port, None)
        (rule,) = connector.fetch_sampling_rules()
        assert (rule.name, rule.rate, rule.priority, rule.can_borrow) == ("cruddur", 0.1, 9000, True)
        targets, _modified = connector.fetch_sampling_target([rule])
        assert targets["cruddur"]["rate"] == 0.1
        paths = [r.path for r in listener.sampling.requests()]
        assert paths == ["/GetSamplingRules", "/SamplingTargets"]
        assert json.loads(listener.sampling.requests()[1].body)["SamplingStatisticsDocuments"][0]["RuleName"] == (
            "cruddur"
        )


def _valid_segment(**changes):
    now = time.time()
    segment = {
        "name": "backend-flask",
        "id": "53995c3f42cd8ad8",
        "trace_id": f"1-{int(now):08x}-7c53a535e19af8e1438b6781",
        "start_time": now - 0.01,
        "end_time": now,
        "in_progress": False,
        "annotations": {"app_result_length": 3, "otel_trace_id": "x", "ok": True},
        "subsegments": [
            {"name": "home_activities", "id": "1a2b3c4d5e6f7a8b", "parent_id": "53995c3f42cd8ad8",
             "start_time": now - 0.005, "end_time": now - 0.001, "in_progress": False}
        ],
    }  # fmt: skip
    segment.update(changes)
    return segment


def _send(listener, document_text):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b'{"format":"json","version":1}\n' + document_text.encode(), ("127.0.0.1", listener.port))


NOW = time.time()
BROKEN = {
    "trace id not 1-8-24 hex": _valid_segment(trace_id="1-6b09fd17-7c53a535e19af8e1438b678"),
    "trace id upper-case hex": _valid_segment(trace_id=f"1-{int(NOW):08X}-7C53A535E19AF8E1438B6781"),
    "trace id 31 days old": _valid_segment(trace_id=f"1-{int(NOW - 31 * 86400):08x}-7c53a535e19af8e1438b6781"),
    "trace id an hour ahead": _valid_segment(trace_id=f"1-{int(NOW + 3600):08x}-7c53a535e19af8e1438b6781"),
    "id of 15 hex digits": _valid_segment(id="53995c3f42cd8ad"),
    "empty name": _valid_segment(name=""),
    "name of 201 characters": _valid_segment(name="n" * 201),
    "name with a comma": _valid_segment(name="GET /a,b"),
    "no end_time and not in progress": _valid_segment(end_time=None, in_progress=False),
    "end before start": _valid_segment(end_time=NOW - 1),
    "start_time a string": _valid_segment(start_time="now"),
    "annotation key with a dot": _valid_segment(annotations={"app.result": 1}),
    "annotation value a list": _valid_segment(annotations={"values": [1, 2]}),
    "subsegment parent_id not its parent": _valid_segment(
        subsegments=[{**_valid_segment()["subsegments"][0], "parent_id": "0000000000000001"}]
    ),
    "subsegment of another trace": _valid_segment(
        subsegments=[{**_valid_segment()["subsegments"][0], "trace_id": "1-6b09fd17-7c53a535e19af8e1438b6782"}]
    ),
}


@pytest.mark.parametrize("rule", BROKEN)
def test_the_listener_refuses_what_xray_refuses(rule):
    with XRayListener() as listener:
        _send(listener, json.dumps(_valid_segment()))
        document = {k: v for k, v in BROKEN[rule].items() if v is not None}
        _send(listener, json.dumps(document))
        wait_for(lambda: listener.datagram_count == 2)
        assert [d["id"] for d in listener.documents()] == ["53995c3f42cd8ad8"]  # the valid one
        ((_, errors),) = listener.rejected()
        assert errors, rule


def test_the_listener_refuses_nan_oversize_and_orphan_subsegments():
    with XRayListener() as listener:
        _send(listener, json.dumps(_valid_segment(annotations={"ratio": float("nan")})))  # NaN is not JSON
        _send(listener, json.dumps(_valid_segment(metadata={"default": {"pad": "x" * 64_000}})))
        parent = _valid_segment()
        orphan = {**parent["subsegments"][0], "type": "subsegment", "trace_id": parent["trace_id"]}
        _send(listener, json.dumps(orphan))  # a subsegment sent on its own whose parent never arrives
        wait_for(lambda: listener.datagram_count >= 2)
        time.sleep(0.2)
        assert len(listener.rejected()) == 3, listener.rejected()
        _send(listener, json.dumps(parent))  # now the parent arrives: the subsegment has one
        wait_for(lambda: len(listener.segments()) == 1)
        assert len(listener.rejected()) == 2


def test_what_the_sdk_sends_passes(xray_listener):
    recorder = recorder_for(xray_listener, streaming_threshold=1)
    recorder.begin_segment("backend-flask")
    recorder.put_annotation("handle", "andrewbrown")
    for index in range(3):
        recorder.begin_subsegment(f"query-{index}")
        recorder.end_subsegment()
    recorder.end_segment()
    wait_for(lambda: len(xray_listener.documents()) >= 2 and xray_listener.segments())
    assert xray_listener.rejected() == []
