"""Outgoing calls of a rerooted request: `traceparent` keeps the caller's trace, `X-Amzn-Trace-Id` the
fresh X-Ray root its segment has, so the downstream service joins the trace X-Ray can show."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from cruddur import create_app
from tests.support.waiting import wait_for


class _Downstream(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self):
        type(self).seen.append(dict(self.headers))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def downstream():
    _Downstream.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Downstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", _Downstream.seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("rerooted", [True, False])
def test_outgoing_headers_of_a_request(rerooted, config, xray_listener, downstream):
    url, seen = downstream
    app = create_app(config.replace(xray_daemon_address=xray_listener.daemon_address))

    @app.get("/test/downstream")
    def call_downstream():
        requests.get(url, timeout=5)
        return {}

    import time
    import uuid

    epoch = 0x0AF76519 if rerooted else int(time.time())  # 1975 (X-Ray refuses it), or now
    caller = f"{epoch:08x}{uuid.uuid4().hex[:24]}"
    response = app.test_client().get(
        "/test/downstream", headers={"traceparent": f"00-{caller}-{uuid.uuid4().hex[:16]}-01"}
    )
    assert response.status_code == 200
    (segment,) = xray_listener.wait_for_segments()
    (sent,) = wait_for(lambda: seen)
    assert sent["traceparent"].startswith(f"00-{caller}-") and sent["traceparent"].endswith("-01")
    root, parent, sampled = sent["X-Amzn-Trace-Id"].split(";")
    assert root == f"Root={segment['trace_id']}" and sampled == "Sampled=1"
    assert (segment["trace_id"] == f"1-{caller[:8]}-{caller[8:]}") is not rerooted
    assert parent == f"Parent={sent['traceparent'].split('-')[2]}"  # the outgoing call's own span
    assert response.headers["X-Amzn-Trace-Id"] == f"{root};{sampled}"
