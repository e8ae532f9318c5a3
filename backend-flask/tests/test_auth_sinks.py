"""Who, in every sink, and never the token: a signed-in user under gunicorn with all four
integrations on (OTLP receiver, X-Ray daemon listener, Rollbar receiver, CloudWatch Logs on moto).

The user shows as `enduser.id` (the Cognito `sub`) on the server span, `user` on the X-Ray
segment, `person.id` in Rollbar and `user` in the access log (stdout and CloudWatch). Then every
byte each sink received, the server's output and every response body are searched for the access
token, the ID token, each of their three parts and any 16 characters of one, and the user's email:
none may appear.
"""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest
import requests
from opentelemetry.instrumentation.utils import suppress_http_instrumentation

from tests.support.app_server import AppServer
from tests.support.cognito import bearer, tokens

FRAGMENT = 16
EMAIL = "bayko@cruddur.invalid"  # local_cognito.py gives each seed user <username>@cruddur.invalid


def traceparent():
    """A sampled caller trace, so that X-Ray records the segment whatever its local rule says (its
    id X-Ray-valid: the first 8 hex digits are the time)."""
    return f"00-{int(time.time()):08x}{uuid.uuid4().hex[:24]}-{uuid.uuid4().hex[:16]}-01"


@pytest.fixture(scope="module")
def signed_in_run(tmp_path_factory, stand_ins, cognito_pool):
    """Serve a few signed-in requests, stop the server (everything flushed), return what was sent."""
    issued = tokens(cognito_pool, "bayko")
    access, id_token = issued["AccessToken"], issued["IdToken"]
    env = {
        **stand_ins.env,
        "ROLLBAR_ACCESS_TOKEN": f"token-{uuid.uuid4().hex}",
        "AWS_COGNITO_USER_POOL_ID": cognito_pool.pool_id,
        "AWS_COGNITO_USER_POOL_CLIENT_ID": cognito_pool.client_id,
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": cognito_pool.endpoint,
    }
    server = AppServer(env, workers=1, log_dir=tmp_path_factory.mktemp("auth-sinks"))
    server.start()
    responses, traces = [], {}
    try:

        def send(name, method, path, headers, **kwargs):
            parent = traceparent()
            # `requests` is instrumented in this process once any test built an app; unsuppressed, it
            # would replace the traceparent sent here with one of its own.
            with suppress_http_instrumentation():
                response = requests.request(
                    method, server.url + path, headers={**headers, "traceparent": parent}, timeout=20, **kwargs
                )
            traces[name] = parent.split("-")[1]
            responses.append(response)
            return response

        signed = bearer(access)
        assert send("post", "POST", "/api/activities", signed, json={"message": "who am i", "ttl": "1-hour"}).ok
        assert send("messages", "GET", "/api/messages/@worf", signed).ok
        assert send("home", "GET", "/api/activities/home", signed).ok
        assert send("rollbar", "GET", "/rollbar/test", signed).ok
        assert send("error", "GET", "/rollbar/test/exception", signed).status_code == 500
        assert send("id_token", "POST", "/api/activities", bearer(id_token), json={"message": "x"}).status_code == 401
        assert send("health", "GET", "/api/health-check", signed).ok
    finally:
        _, returncode = server.stop()
    assert returncode == 0, server.stderr_text()[-3000:]
    claims = jwt.decode(access, options={"verify_signature": False})
    return {"server": server, "access": access, "id_token": id_token, "sub": claims["sub"], "traces": traces,
            "responses": responses}  # fmt: skip


def test_the_server_span_names_the_cognito_user(signed_in_run, stand_ins):
    sub, traces = signed_in_run["sub"], signed_in_run["traces"]
    for name in ("post", "messages", "home", "rollbar", "error"):
        servers = [s for s in stand_ins.otlp.spans_for_trace(traces[name]) if s["kind"] == "SERVER"]
        assert [s["attributes"].get("enduser.id") for s in servers] == [sub], name
    refused = [s for s in stand_ins.otlp.spans_for_trace(traces["id_token"]) if s["kind"] == "SERVER"]
    assert [s["attributes"].get("enduser.id") for s in refused] == [None]


def test_the_xray_segment_names_the_user(signed_in_run, stand_ins):
    traces = signed_in_run["traces"]
    for name in ("post", "messages", "home", "error"):
        segments = [d for d in stand_ins.xray.documents_for_trace(traces[name]) if d.get("type") != "subsegment"]
        assert [s.get("user") for s in segments] == ["bayko"], name


def test_rollbar_items_name_the_person(signed_in_run, stand_ins):
    sub, traces = signed_in_run["sub"], signed_in_run["traces"]
    items = {i["custom"]["trace_id"]: i for i in stand_ins.rollbar.items()}
    for name in ("rollbar", "error"):
        assert items[traces[name]]["person"] == {"id": sub, "username": "bayko"}, name


def test_the_access_log_names_the_user(signed_in_run, stand_ins):
    traces = signed_in_run["traces"]
    stdout = [r for r in signed_in_run["server"].log_records() if r.get("logger") == "cruddur.access"]
    cloudwatch = [r for r in stand_ins.moto.records(stand_ins.log_group) if r.get("logger") == "cruddur.access"]
    for lines in (stdout, cloudwatch):
        by_trace = {r["trace_id"]: r for r in lines}
        for name in ("post", "messages", "home", "rollbar", "error"):
            assert by_trace[traces[name]]["user"] == "bayko", name
        assert by_trace[traces["id_token"]]["user"] is None


def test_no_sink_ever_sees_the_token_or_the_email(signed_in_run, stand_ins):
    access, id_token = signed_in_run["access"], signed_in_run["id_token"]
    secrets = {"access token": access, "ID token": id_token, "email": EMAIL}
    for label, token in (("access", access), ("ID", id_token)):
        for part, text in zip(("header", "payload", "signature"), token.split("."), strict=True):
            secrets[f"{label} token {part}"] = text
    assert EMAIL in jwt.decode(id_token, options={"verify_signature": False}).values()
    server = signed_in_run["server"]
    sinks = {
        "opentelemetry": b"".join(e["body"] for e in stand_ins.otlp.exports()).decode("latin-1")
        + repr(stand_ins.otlp.spans()),
        "xray": json.dumps(stand_ins.xray.documents()),
        "rollbar": json.dumps(stand_ins.rollbar.payloads()) + repr(stand_ins.rollbar.headers()),
        "cloudwatch": repr(stand_ins.moto.events(stand_ins.log_group)),
        "server stdout": server.stdout_text(),
        "server stderr": server.stderr_text(),
        "responses": "".join(repr(dict(r.headers)) + r.text for r in signed_in_run["responses"]),
    }
    assert stand_ins.otlp.spans() and stand_ins.xray.documents() and stand_ins.rollbar.items()
    leaks = [(secret, sink) for secret, value in secrets.items() for sink, text in sinks.items() if value in text]
    assert leaks == []
    # Any piece of a token too: 16 characters of base64url are 96 bits, never there by chance.
    # (Every token of the pool starts with the same header, so the header's pieces count once.)
    pieces = {}
    for label, token in (("access token", access), ("ID token", id_token)):
        for start in range(len(token) - FRAGMENT + 1):
            pieces.setdefault(token[start : start + FRAGMENT], f"{label}[{start}:{start + FRAGMENT}]")
    found = {
        (pieces[text[i : i + FRAGMENT]], sink)
        for sink, text in sinks.items()
        for i in range(len(text) - FRAGMENT + 1)
        if text[i : i + FRAGMENT] in pieces
    }
    assert sorted(found)[:5] == []
