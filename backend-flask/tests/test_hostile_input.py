"""Hostile input: a corpus of wrong, malformed and malicious requests, sent twice.

Once through the Flask test client (the app alone, every integration off) and once as raw bytes over
a real socket to the app under gunicorn with all four integrations on, pointed at their stand-ins
(what a client on the network can actually send, with telemetry in the path). For every case: never a 5xx;
every 4xx the app answers is the JSON error shape `{"errors": [...], "message": ...}`; text that is
stored comes back byte for byte when read again with GET.

gunicorn answers some malformed HTTP itself, before the app runs (over-long request lines and header
fields, more than 100 headers, NUL or raw non-ASCII bytes in the request line, bad header names or
Content-Length/Transfer-Encoding values, folded headers, duplicate Host). Those answers are gunicorn's
own HTML error page (`Content-Type: text/html`, no `traceresponse`), never JSON: the cases below
assert exactly that, status and reason text, so a change in gunicorn's behaviour shows up here.
"""

from __future__ import annotations

import abc
import contextlib
import http.client
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from cruddur import create_app
from tests.support.app_server import AppServer
from tests.support.browser_exports import export_json, export_protobuf, json_span
from tests.support.fixtures import seeded_config
from tests.support.postgres import create_database, drop_database

ONE_MIB = 1024 * 1024
RELAY_MAX = 512 * 1024  # cruddur.telemetry.browser.MAX_BODY_BYTES
FRONTEND = "http://localhost:3000"
TRACES = "/api/telemetry/v1/traces"
JSON = {"Content-Type": "application/json"}
TRACERESPONSE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
# gunicorn's defaults: limit_request_line 4094, limit_request_field_size 8190, limit_request_fields 100.
GUNICORN_LINE_LIMIT = 4094


# -- transports ------------------------------------------------------------------------------------
@dataclass
class Reply:
    """One HTTP answer, whoever produced it."""

    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self):
        """The body as JSON."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.headers.get('content-type')} {self.body[:300]!r}>"


class Transport(abc.ABC):
    """Sends requests; `fill` replaces `{crud}` in a target with the uuid of a live crud."""

    name = ""
    is_server = False
    _crud: str | None = None

    @abc.abstractmethod
    def request(self, method: str, target: str, headers: dict | None = None, body: bytes = b"") -> Reply:
        """Send one request and return the reply (the test client, or raw bytes to gunicorn)."""

    def fill(self, target: str) -> str:
        """Substitute `{crud}` with a crud that exists (the newest one in the home feed)."""
        if "{crud}" in target:
            if self._crud is None:
                self._crud = self.get("/api/activities/home").json()[0]["uuid"]
            target = target.replace("{crud}", self._crud)
        return target

    def get(self, target: str, headers: dict | None = None) -> Reply:
        """GET."""
        return self.request("GET", target, headers)

    def post_json(self, target: str, value, headers: dict | None = None) -> Reply:
        """POST a JSON value (serialized by the stdlib, non-ASCII kept as UTF-8)."""
        body = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return self.request("POST", target, {**JSON, **(headers or {})}, body)


class FlaskTransport(Transport):
    """The Flask test client: the app alone, no HTTP parser in front of it."""

    name = "flask"

    def __init__(self, client):
        self.client = client

    def request(self, method, target, headers=None, body=b""):
        response = self.client.open(self.fill(target), method=method, headers=headers or {}, data=body)
        return Reply(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.get_data(),
        )


class HttpTransport(Transport):
    """Raw bytes over a socket to gunicorn, one connection per request."""

    name = "gunicorn"
    is_server = True

    def __init__(self, server: AppServer):
        self.server = server

    def request(self, method, target, headers=None, body=b""):
        head = [f"{method} {self.fill(target)} HTTP/1.1", f"Host: 127.0.0.1:{self.server.port}", "Connection: close"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body)}")
        data = "\r\n".join(head).encode("utf-8") + b"\r\n\r\n" + body
        return self.raw(data, method)

    def raw(self, data: bytes, method: str = "GET") -> Reply:
        """Send exactly these bytes and read one response."""
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=20)
        # A large body is sent from a thread: the server may answer (413) before reading it, and the
        # answer must be read while the body is still going out.
        sender = threading.Thread(target=_send_quietly, args=(sock, data), daemon=True)
        sender.start()
        try:
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
            body = response.read()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
        finally:
            sender.join(20)
            sock.close()

    def raw_request(self, request_line: bytes, header_lines: bytes = b"", body: bytes = b"") -> Reply:
        """A request built from raw bytes: request line, extra header lines (each ending CRLF), body."""
        data = request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + header_lines + b"\r\n" + body
        return self.raw(data, request_line.split(b" ", 1)[0].decode("latin-1"))


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    # The server may answer and close before reading everything: the answer is what counts.
    with contextlib.suppress(OSError):
        sock.sendall(data)


# -- expectations ----------------------------------------------------------------------------------
def expect(reply: Reply, status: int | tuple[int, ...], codes: list[str] | None = None) -> Reply:
    """An answer from the app: this status, and for an error the JSON error shape (with these codes)."""
    assert reply.status < 500, reply
    allowed = status if isinstance(status, tuple) else (status,)
    assert reply.status in allowed, (allowed, reply)
    assert TRACERESPONSE.match(reply.headers.get("traceresponse", "")), reply.headers
    assert b"Traceback" not in reply.body, reply
    if reply.status >= 400:
        assert reply.headers.get("content-type", "").split(";")[0] == "application/json", reply
        body = reply.json()
        assert isinstance(body, dict) and set(body) == {"errors", "message"}, body
        assert body["errors"] and all(isinstance(code, str) for code in body["errors"]), body
        assert isinstance(body["message"], str), body
        if codes is not None:
            assert body["errors"] == codes, (codes, body)
    return reply


def expect_search(reply: Reply) -> list | None:
    """A search answer: a list, or 422 search_term_too_long (the app caps a term's length and words)."""
    expect(reply, (200, 422))
    if reply.status == 422:
        assert reply.json()["errors"] == ["search_term_too_long"], reply
        return None
    assert isinstance(reply.json(), list), reply
    return reply.json()


def expect_gunicorn_rejection(reply: Reply, status: int, reason: str) -> None:
    """gunicorn refused the request before the app saw it: its own HTML error page (not JSON), no 5xx."""
    assert reply.status == status, (status, reply)
    assert reply.headers.get("content-type") == "text/html", reply
    assert reason in reply.body.decode("latin-1"), (reason, reply)
    assert "traceresponse" not in reply.headers, "the app never ran, so it cannot have answered"
    assert b"Traceback" not in reply.body


# -- the corpus ------------------------------------------------------------------------------------
@dataclass
class Case:
    """One hostile input: `run(transport)` sends it and asserts the answer."""

    id: str
    run: Callable[[Transport], None]
    only: str | None = None  # "flask" or "gunicorn" when the input only exists for one transport


CORPUS: list[Case] = []


def case(id_: str, only: str | None = None):
    """Register the decorated function as a corpus case."""

    def register(run):
        CORPUS.append(Case(id_, run, only))
        return run

    return register


POST_ENDPOINTS = {
    "activities": ("/api/activities", {"message": "hostile but fine", "ttl": "1-day"}),
    "reply": ("/api/activities/{crud}/reply", {"message": "hostile but fine"}),
    "messages": ("/api/messages", {"message": "hostile but fine", "user_receiver_handle": "londo"}),
}
# What an explicit JSON null means: the same as an absent field.
NULL_ANSWERS = {
    ("activities", "message"): (422, ["message_blank"]),
    ("activities", "ttl"): (422, ["ttl_blank"]),
    ("reply", "message"): (422, ["message_blank"]),
    ("messages", "message"): (422, ["message_blank"]),
    ("messages", "user_receiver_handle"): (404, ["not_found"]),
}
WRONG_TYPES = {
    "int": 7,
    "zero": 0,
    "float": 1.5,
    "negative": -1,
    "list": ["hello"],
    "empty_list": [],
    "object": {"text": "hello"},
    "empty_object": {},
    "true": True,
    "false": False,
}


def _wrong_type_case(endpoint: str, name: str, value, type_name: str):
    path, valid = POST_ENDPOINTS[endpoint]

    def run(t: Transport):
        reply = t.post_json(path, {**valid, name: value})
        if value is None:
            status, codes = NULL_ANSWERS[(endpoint, name)]
            expect(reply, status, codes)
        else:
            expect(reply, 400, [f"{name}_not_string"])

    CORPUS.append(Case(f"wrong-type-{endpoint}-{name}-{type_name}", run))


for _endpoint, (_path, _valid) in POST_ENDPOINTS.items():
    for _name in _valid:
        for _type_name, _value in {**WRONG_TYPES, "null": None}.items():
            _wrong_type_case(_endpoint, _name, _value, _type_name)


def _whole_body_case(endpoint: str, label: str, raw_body: bytes):
    path, _valid = POST_ENDPOINTS[endpoint]

    def run(t: Transport):
        expect(t.request("POST", path, JSON, raw_body), 400, ["invalid_body"])

    CORPUS.append(Case(f"body-not-object-{endpoint}-{label}", run))


for _endpoint in POST_ENDPOINTS:
    for _label, _raw in {
        "list": b'["message", "hello"]',
        "string": b'"hello"',
        "number": b"42",
        "null": b"null",
        "true": b"true",
    }.items():
        _whole_body_case(_endpoint, _label, _raw)


@case("extra-fields-cannot-choose-author-or-counts")
def _(t: Transport):
    body = {
        "message": "mine",
        "ttl": "1-day",
        "handle": "worf",
        "display_name": "Worf",
        "uuid": "00000000-0000-0000-0000-000000000000",
        "likes_count": 10**9,
        "replies_count": -5,
        "created_at": "1999-01-01T00:00:00+00:00",
        "reply_to_activity_uuid": "{crud}",
    }
    crud = expect(t.post_json("/api/activities", body), 200).json()
    assert (crud["handle"], crud["likes_count"], crud["replies_count"]) == ("andrewbrown", 0, 0)
    assert crud["uuid"] != body["uuid"] and "reply_to_activity_uuid" not in crud


# -- deep, huge and odd JSON -------------------------------------------------------------------------
def _raw_json_case(id_: str, raw_body: bytes, status: int, codes: list[str] | None, path="/api/activities"):
    CORPUS.append(Case(id_, lambda t: expect(t.request("POST", path, JSON, raw_body), status, codes)))


# Python's json parser recurses once per nesting level; past ~1000 levels it raises RecursionError,
# which is not a ValueError, so Flask does not turn it into its "bad JSON" error.
_raw_json_case(
    "deep-json-array-5000-as-message",
    b'{"message": ' + b"[" * 5000 + b"]" * 5000 + b', "ttl": "1-day"}',
    400,
    ["malformed_json"],
)
_raw_json_case("deep-json-object-20000", b'{"a":' * 20000 + b"1" + b"}" * 20000, 400, ["malformed_json"])
_raw_json_case(
    "deep-json-array-5000-reply",
    b"[" * 5000 + b"]" * 5000,
    400,
    ["malformed_json"],
    path="/api/activities/{crud}/reply",
)
_raw_json_case(
    "deep-json-array-5000-messages", b"[" * 5000 + b"]" * 5000, 400, ["malformed_json"], path="/api/messages"
)
_raw_json_case(
    "nested-json-100-as-message",
    b'{"message": ' + b"[" * 100 + b"]" * 100 + b', "ttl": "1-day"}',
    400,
    ["message_not_string"],
)
_raw_json_case(
    "wide-object-40000-keys",
    json.dumps({f"k{i}": i for i in range(40000)}).encode(),
    422,
    ["message_blank", "ttl_blank"],
)
_raw_json_case(
    "long-array-as-message", b'{"message": [' + b"1," * 200000 + b'1], "ttl": "1-day"}', 400, ["message_not_string"]
)
_raw_json_case(
    "900k-message", b'{"message": "' + b"x" * 900_000 + b'", "ttl": "1-day"}', 422, ["message_exceed_max_chars"]
)
_raw_json_case("float-overflow", b'{"message": 1e400, "ttl": "1-day"}', 400, ["message_not_string"])
_raw_json_case("nan-literal", b'{"message": NaN, "ttl": "1-day"}', 400, ["message_not_string"])
_raw_json_case("infinity-literal", b'{"message": "x", "ttl": -Infinity}', 400, ["ttl_not_string"])
_raw_json_case("integer-10000-digits", b'{"message": ' + b"9" * 10000 + b"}", 400, ["malformed_json"])
_raw_json_case("trailing-garbage", b'{"message": "x", "ttl": "1-day"} trailing', 400, ["malformed_json"])
_raw_json_case("truncated", b'{"message": "x", "ttl": "1-d', 400, ["malformed_json"])
_raw_json_case("empty-body", b"", 400, ["malformed_json"])
_raw_json_case("whitespace-only", b" \n\t " * 1000, 400, ["malformed_json"])
_raw_json_case("single-quotes", b"{'message': 'x', 'ttl': '1-day'}", 400, ["malformed_json"])
_raw_json_case("comment", b'{"message": "x", /* hi */ "ttl": "1-day"}', 400, ["malformed_json"])
_raw_json_case(
    "duplicate-keys-last-wins", b'{"message": "x", "message": 5, "ttl": "1-day"}', 400, ["message_not_string"]
)


# -- encodings: invalid UTF-8, lone surrogates --------------------------------------------------------
for _label, _bytes in {
    "ff-fe": b"\xff\xfe",
    "overlong-slash": b"\xc0\xaf",
    "truncated-euro": b"\xe2\x82",
    "continuation-only": b"\x80\x80",
    "latin1-e-acute": b"\xe9",
}.items():
    _raw_json_case(
        f"invalid-utf8-{_label}",
        b'{"message": "caf' + _bytes + b'", "ttl": "1-day"}',
        400,
        ["malformed_json"],
    )
# json.loads decodes bytes with "surrogatepass": a UTF-8-encoded surrogate arrives as a lone surrogate.
_raw_json_case(
    "invalid-utf8-encoded-surrogate",
    b'{"message": "caf\xed\xa0\x80", "ttl": "1-day"}',
    400,
    ["message_invalid_unicode"],
)

_raw_json_case("invalid-utf8-in-key", b'{"\xff": 1, "message": "x", "ttl": "1-day"}', 400, ["malformed_json"])

LONE_SURROGATES = {"high": "\\ud800", "low": "\\udfff", "embedded": "a\\ud800b", "reversed-pair": "\\udc00\\ud800"}


def _nul_case(label: str, text: str):
    def run(t: Transport):
        # PostgreSQL's text cannot hold NUL: a message with one is refused on either database, and
        # a handle, uuid or search term with one finds nothing (no 5xx from the driver).
        crud = expect(t.post_json("/api/activities", {"message": "nul target", "ttl": "1-day"}), 200).json()
        for path, body in (
            ("/api/activities", {"message": text, "ttl": "1-day"}),
            (f"/api/activities/{crud['uuid']}/reply", {"message": text}),
            ("/api/messages", {"message": text, "user_receiver_handle": "londo"}),
        ):
            expect(t.post_json(path, body), 400, ["message_contains_nul"])
        expect(t.post_json("/api/messages", {"message": "x", "user_receiver_handle": text}), 404, ["not_found"])
        expect(t.post_json("/api/activities", {"message": "x", "ttl": text}), 422, ["ttl_blank"])
        encoded = quote(text, safe="")
        expect(t.get(f"/api/activities/@{encoded}"), 404, ["not_found"])
        expect(t.get(f"/api/messages/@{encoded}"), 404, ["not_found"])
        expect(t.get(f"/api/activities/{crud['uuid']}{encoded}"), 404, ["not_found"])
        assert expect_search(t.get(f"/api/activities/search?term={encoded}")) in ([], None)

    CORPUS.append(Case(f"nul-{label}", run))


for _label, _text in {"alone": "\x00", "inside": "nul \x00 end", "after-handle": "worf\x00"}.items():
    _nul_case(_label, _text)


def _surrogate_case(endpoint: str, name: str, label: str, escaped: str):
    path, valid = POST_ENDPOINTS[endpoint]
    fields = {**valid, name: "@@"}
    raw_body = json.dumps(fields).replace('"@@"', f'"{escaped}"').encode()

    def run(t: Transport):
        expect(t.request("POST", path, JSON, raw_body), 400, [f"{name}_invalid_unicode"])

    CORPUS.append(Case(f"lone-surrogate-{endpoint}-{name}-{label}", run))


for _endpoint, (_path, _valid) in POST_ENDPOINTS.items():
    for _name in _valid:
        for _label, _escaped in LONE_SURROGATES.items():
            _surrogate_case(_endpoint, _name, _label, _escaped)


@case("lone-surrogate-in-unused-key-is-ignored")
def _(t: Transport):
    raw_body = b'{"\\ud800": "\\udfff", "message": "keys are not stored", "ttl": "1-day"}'
    assert expect(t.request("POST", "/api/activities", JSON, raw_body), 200).json()["message"] == "keys are not stored"


@case("escaped-surrogate-pair-is-one-emoji")
def _(t: Transport):
    raw_body = b'{"message": "launch \\ud83d\\ude80", "ttl": "1-day"}'
    crud = expect(t.request("POST", "/api/activities", JSON, raw_body), 200).json()
    assert crud["message"] == "launch \U0001f680"
    assert t.get(f"/api/activities/{crud['uuid']}").json()["message"] == "launch \U0001f680"


@case("utf16-body")
def _(t: Transport):
    text = "utf-16 body \u00e9\U0001f680"
    raw_body = json.dumps({"message": text, "ttl": "1-day"}, ensure_ascii=False).encode("utf-16")
    crud = expect(t.request("POST", "/api/activities", JSON, raw_body), 200).json()
    assert crud["message"] == text


@case("utf8-bom-body")
def _(t: Transport):
    raw_body = b'\xef\xbb\xbf{"message": "after a BOM", "ttl": "1-day"}'
    assert expect(t.request("POST", "/api/activities", JSON, raw_body), 200).json()["message"] == "after a BOM"


# -- SQL and script text in every string field, handle and search term --------------------------------
INJECTIONS = {
    "sql-drop": "'; DROP TABLE activities; --",
    "sql-or": "\" OR 1=1 -- and ' OR '1'='1",
    "sql-union": "' UNION SELECT uuid, handle, display_name, handle, 1, 1, 1, 1, 1, NULL FROM users --",
    "sql-like-wildcards": "100% of _everything_ \\% escaped",
    "sql-stacked": "x'); DELETE FROM users WHERE ('1'='1",
    "script-tag": "<script>alert(document.cookie)</script>",
    "img-onerror": '<img src=x onerror="alert(1)"> &amp; &lt;b&gt;',
    "javascript-url": "javascript:alert(1)//</textarea></title>",
    "templates-and-formats": "{{7*7}} ${7*7} #{7*7} %s %n %x {0} <%= 7*7 %>",
    "controls": "bell \x07 esc \x1b[31m del \x7f unit-separator \x1f end",
    "rtl-and-zero-width": "\u202eevil\u202c \u200f\u200b\ufeff \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "emoji-and-combining": "\U0001f680\U0001f469\u200d\U0001f4bb\U0001f1e8\U0001f1e6 e\u0301 \u0300\u0301\u0302",
    "backslashes-and-escapes": "\\ \\\\ \\u0000 \\n \\x00 \\' \\\"",
    "crlf-header-injection": "line\r\nSet-Cookie: pwned=1\r\n\r\n<html>",
    "path-traversal": "../../../../etc/passwd",
    "max-length-astral": "\U0001f525" * 280,
}


def _injection_case(label: str, text: str):
    def run(t: Transport):
        # Stored as a crud, a reply and a message; each read back with GET exactly as sent.
        crud = expect(t.post_json("/api/activities", {"message": text, "ttl": "1-day"}), 200).json()
        assert crud["message"] == text
        assert t.get(f"/api/activities/{crud['uuid']}").json()["message"] == text

        reply = expect(t.post_json(f"/api/activities/{crud['uuid']}/reply", {"message": text}), 200).json()
        assert reply["message"] == text
        shown = expect(t.get(f"/api/activities/{crud['uuid']}"), 200).json()
        assert shown["replies_count"] == 1 and [r["message"] for r in shown["replies"]] == [text]

        sent = expect(t.post_json("/api/messages", {"message": text, "user_receiver_handle": "londo"}), 200).json()
        conversation = expect(t.get("/api/messages/@londo"), 200).json()
        assert [m["message"] for m in conversation if m["uuid"] == sent["uuid"]] == [text]

        # Not stored: ttl and receiver handle are looked up, never interpreted.
        expect(t.post_json("/api/activities", {"message": "x", "ttl": text}), 422, ["ttl_blank"])
        expect(t.post_json("/api/messages", {"message": "x", "user_receiver_handle": text}), 404, ["not_found"])
        encoded = quote(text, safe="")
        expect(t.get(f"/api/activities/@{encoded}"), 404, ["not_found"])
        expect(t.get(f"/api/messages/@{encoded}"), 404, ["not_found"])

        found = expect_search(t.get(f"/api/activities/search?term={encoded}"))
        if found is not None and text.isascii():
            # SQLite lower-cases ASCII only: assert the match only there.
            assert crud["uuid"] in {a["uuid"] for a in found}, found

        # Nothing was dropped or rewritten: the seed users and their cruds are all still there.
        feed = expect(t.get("/api/activities/@worf"), 200).json()
        assert feed and {a["handle"] for a in feed} == {"worf"}

    CORPUS.append(Case(f"injection-{label}", run))


for _label, _text in INJECTIONS.items():
    _injection_case(_label, _text)


# -- unexpected methods on every route ----------------------------------------------------------------
ROUTES = {
    "/api/health-check": {"GET"},
    "/api/activities/home": {"GET"},
    "/api/activities/notifications": {"GET"},
    "/api/activities/@andrewbrown": {"GET"},
    "/api/activities/search?term=cloud": {"GET"},
    "/api/activities": {"POST"},
    "/api/activities/{crud}": {"GET"},
    "/api/activities/{crud}/reply": {"POST"},
    "/api/message_groups": {"GET"},
    "/api/messages/@bayko": {"GET"},
    "/api/messages": {"POST"},
    TRACES: {"POST"},
    "/rollbar/test": {"GET"},
    "/rollbar/test/exception": {"GET"},
}
ODD_METHODS = ("PUT", "DELETE", "PATCH", "TRACE", "PROPFIND", "BREW")


def _methods_case(route: str, allowed: set[str]):
    def run(t: Transport):
        for method in (*ODD_METHODS, *({"GET", "POST"} - allowed)):
            reply = t.request(method, route, JSON, b'{"message": "x", "ttl": "1-day"}')
            expect(reply, 405, ["method_not_allowed"])
            assert allowed <= {m.strip() for m in reply.headers["allow"].split(",")}, (method, reply.headers)
        if "GET" in allowed and route != "/rollbar/test/exception":
            head = t.request("HEAD", route)
            assert (head.status, head.body) == (200, b""), head
        expect(t.request("OPTIONS", route), 200)

    CORPUS.append(Case(f"methods-{route.split('?')[0].strip('/').replace('/', '-').replace('{crud}', 'uuid')}", run))


for _route, _allowed in ROUTES.items():
    _methods_case(_route, _allowed)


# -- wrong and missing content types ------------------------------------------------------------------
REJECTED_CONTENT_TYPES = {
    "missing": None,
    "empty": "",
    "text-plain": "text/plain",
    "form-urlencoded": "application/x-www-form-urlencoded",
    "multipart": "multipart/form-data; boundary=xyz",
    "xml": "application/xml",
    "jsonx": "application/jsonx",
    "bare-json": "json",
    "garbage": ";;;===,,,",
    "long": "application/" + "x" * 5000,
}
ACCEPTED_CONTENT_TYPES = {
    "upper-case": "APPLICATION/JSON",
    "charset-utf8": "application/json; charset=utf-8",
    "charset-utf16-on-utf8": "application/json; charset=utf-16",
    "plus-json": "application/merge-patch+json",
}


def _content_type_case(endpoint: str, label: str, content_type: str | None, accepted: bool):
    path, valid = POST_ENDPOINTS[endpoint]
    body = json.dumps(valid).encode()

    def run(t: Transport):
        headers = {} if content_type is None else {"Content-Type": content_type}
        reply = t.request("POST", path, headers, body)
        if accepted:
            assert expect(reply, 200).json()["message"] == valid["message"]
        else:
            expect(reply, 415, ["unsupported_media_type"])

    CORPUS.append(Case(f"content-type-{endpoint}-{label}", run))


for _endpoint in POST_ENDPOINTS:
    for _label, _ctype in REJECTED_CONTENT_TYPES.items():
        _content_type_case(_endpoint, _label, _ctype, accepted=False)
    for _label, _ctype in ACCEPTED_CONTENT_TYPES.items():
        _content_type_case(_endpoint, _label, _ctype, accepted=True)


# -- bodies around the 1 MiB limit ------------------------------------------------------------------
def _sized_body(valid: dict, size: int) -> bytes:
    """A JSON object of exactly `size` bytes whose message is padding."""
    template = json.dumps({**valid, "message": "@@"}).encode()
    return template.replace(b"@@", b"x" * (size - len(template) + 2))


def _size_cases(endpoint: str):
    path, valid = POST_ENDPOINTS[endpoint]

    def under(t: Transport):
        body = _sized_body(valid, ONE_MIB)
        assert len(body) == ONE_MIB
        expect(t.request("POST", path, JSON, body), 422, ["message_exceed_max_chars"])

    def over(t: Transport):
        body = _sized_body(valid, ONE_MIB + 1)
        expect(t.request("POST", path, JSON, body), 413, ["request_entity_too_large"])

    def claimed(t: Transport):
        # Content-Length says 10 MiB: refused from the header alone, the body is never awaited.
        if t.is_server:
            reply = t.raw_request(
                f"POST {t.fill(path)} HTTP/1.1".encode(),
                b"Content-Type: application/json\r\nContent-Length: 10485760\r\n",
                b"{}",
            )
        else:
            reply = t.request("POST", path, JSON, b"x" * (10 * ONE_MIB))
        expect(reply, 413, ["request_entity_too_large"])

    CORPUS.append(Case(f"size-{endpoint}-exactly-1mib", under))
    CORPUS.append(Case(f"size-{endpoint}-1mib-plus-1", over))
    CORPUS.append(Case(f"size-{endpoint}-claims-10mib", claimed))


for _endpoint in POST_ENDPOINTS:
    _size_cases(_endpoint)


def _chunked(body: bytes, chunk: int = 65536) -> bytes:
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


CHUNKED_POST = b"POST /api/activities HTTP/1.1"
CHUNKED_HEADERS = b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"


@case("chunked-small-body", only="gunicorn")
def _(t: HttpTransport):
    body = json.dumps({"message": "sent in chunks", "ttl": "1-day"}).encode()
    reply = t.raw_request(CHUNKED_POST, CHUNKED_HEADERS, _chunked(body, 7))
    assert expect(reply, 200).json()["message"] == "sent in chunks"


@case("chunked-over-1mib-is-413", only="gunicorn")
def _(t: HttpTransport):
    # No Content-Length: werkzeug caps the stream at MAX_CONTENT_LENGTH and (unless told otherwise)
    # hands the app the first 1 MiB silently; the API answers 413 for a body over 1 MiB.
    body = _sized_body({"message": "", "ttl": "1-day"}, ONE_MIB + 1000)
    expect(t.raw_request(CHUNKED_POST, CHUNKED_HEADERS, _chunked(body)), 413, ["request_entity_too_large"])


@case("chunked-exactly-1mib-is-taken", only="gunicorn")
def _(t: HttpTransport):
    # The limit is a maximum: a chunked body of exactly 1 MiB is within it.
    body = _sized_body({"message": "", "ttl": "1-day"}, ONE_MIB)
    expect(t.raw_request(CHUNKED_POST, CHUNKED_HEADERS, _chunked(body)), 422, ["message_exceed_max_chars"])


@case("chunked-bad-chunk-size", only="gunicorn")
def _(t: HttpTransport):
    # gunicorn's chunk parser raises InvalidChunkSize while the app reads the body.
    expect(t.raw_request(CHUNKED_POST, CHUNKED_HEADERS, b"zz\r\n{}\r\n0\r\n\r\n"), 400)


@case("chunked-missing-terminator", only="gunicorn")
def _(t: HttpTransport):
    expect(t.raw_request(CHUNKED_POST, CHUNKED_HEADERS, b"2\r\n{}XX0\r\n\r\n"), 400)


# -- headers -------------------------------------------------------------------------------------------
# Trace headers a caller may send: none may cost a 5xx, and none is echoed in full by a log line.
TRACE_HEADER_VALUES: list[str] = []


def _header_case(id_: str, headers: dict, only: str | None = None):
    TRACE_HEADER_VALUES.extend(
        v for k, v in headers.items() if k.lower() in ("traceparent", "tracestate", "x-amzn-trace-id")
    )

    def run(t: Transport):
        reply = expect(t.get("/api/activities/home", headers), 200)
        assert isinstance(reply.json(), list) and reply.json()

    CORPUS.append(Case(id_, run, only))


_header_case("header-8000-bytes", {"X-Junk": "a" * 8000})
_header_case("header-traceparent-junk", {"traceparent": "00-" + "z" * 7000 + "-01"})
_header_case("header-traceparent-zero-ids", {"traceparent": "00-" + "0" * 32 + "-" + "0" * 16 + "-01"})
_header_case("header-tracestate-junk", {"tracestate": ",".join(f"k{i}=<script>" for i in range(500))})
_header_case("header-xray-junk", {"X-Amzn-Trace-Id": "Root=" + "1-;" * 2000 + ";Parent=<x>;Sampled=9"})
_TRACE = "6b09fd177c53a535e19af8e1438b6781"
_XRAY_ROOT = "Root=1-6b09fd17-7c53a535e19af8e1438b6781"
for _label, _headers in {
    "traceparent-over-long": {"traceparent": f"00-{_TRACE}-b7ad6b7169203331-01" + "-00" * 2000},
    "traceparent-version-ff": {"traceparent": f"ff-{_TRACE}-b7ad6b7169203331-01"},
    "traceparent-future-version-extra": {"traceparent": f"cc-{_TRACE}-b7ad6b7169203331-01-what-ever"},
    "traceparent-zero-trace": {"traceparent": "00-" + "0" * 32 + "-b7ad6b7169203331-01"},
    "traceparent-zero-span": {"traceparent": f"00-{_TRACE}-" + "0" * 16 + "-01"},
    "traceparent-upper-hex": {"traceparent": f"00-{_TRACE.upper()}-B7AD6B7169203331-01"},
    "traceparent-twice": {"traceparent": f"00-{_TRACE}-b7ad6b7169203331-01,00-{_TRACE}-b7ad6b7169203332-00"},
    "traceparent-non-ascii": {"traceparent": f"00-{_TRACE[:-1]}\u00e9-b7ad6b7169203331-01"},
    "tracestate-5000": {"traceparent": f"00-{_TRACE}-b7ad6b7169203331-01", "tracestate": "k=" + "v" * 5000},
    "tracestate-duplicate-keys": {"traceparent": f"00-{_TRACE}-b7ad6b7169203331-01", "tracestate": "a=1,a=2,b=3"},
    "tracestate-non-ascii": {"traceparent": f"00-{_TRACE}-b7ad6b7169203331-01", "tracestate": "k=\u00fc\U0001f680"},
    "tracestate-alone": {"tracestate": "k=v,other=" + "x" * 600},
    "xray-over-long": {"X-Amzn-Trace-Id": _XRAY_ROOT + ";Self=" + "x" * 6000},
    "xray-sampled-question": {"X-Amzn-Trace-Id": _XRAY_ROOT + ";Sampled=?"},
    "xray-duplicate-keys": {"X-Amzn-Trace-Id": _XRAY_ROOT + ";Parent=53995c3f42cd8ad8;Parent=53995c3f42cd8ad9"},
    "xray-zero-ids": {"X-Amzn-Trace-Id": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000"},
    "xray-old-root": {"X-Amzn-Trace-Id": "Root=1-0af76519-16cd43dd8448eb211c80319c;Parent=53995c3f42cd8ad8;Sampled=1"},
    "xray-future-root": {"X-Amzn-Trace-Id": "Root=1-ffffffff-16cd43dd8448eb211c80319c;Sampled=1"},
    "xray-no-equals": {"X-Amzn-Trace-Id": "Root;Parent;Sampled"},
    "xray-non-ascii": {"X-Amzn-Trace-Id": "Root=1-6b09fd17-7c53a535e19af8e1438b678\u00e9;Sampled=1"},
    "both-disagreeing": {
        "traceparent": f"00-{_TRACE}-b7ad6b7169203331-00",
        "X-Amzn-Trace-Id": _XRAY_ROOT + ";Sampled=1",
    },
}.items():
    _header_case(f"trace-header-{_label}", _headers)
_header_case("header-cookie-8000", {"Cookie": "session=" + "a" * 7990})
_header_case("header-90-headers", {f"X-H{i}": "v" * 50 for i in range(90)})
_header_case("header-origin-evil", {"Origin": "http://evil.example/<script>" + "x" * 1000})
_header_case("header-accept-and-agent-junk", {"Accept": "*/*;q=<script>", "User-Agent": "'; DROP TABLE users; --"})
_header_case("header-forwarded-junk", {"X-Forwarded-For": "' OR 1=1, 999.999.999.999, ::zz", "Forwarded": "for=<x>"})
_header_case("header-200k-bytes", {"X-Junk": "a" * 200_000}, only="flask")
_header_case("header-1000-headers", {f"X-H{i}": "v" for i in range(1000)}, only="flask")
_header_case("header-nul-in-value", {"X-Junk": "a\x00b"}, only="flask")


@case("header-latin1-and-utf8-bytes", only="gunicorn")
def _(t: HttpTransport):
    for value in (b"\xff\xfe\xe9", "\u00fc\U0001f680".encode()):
        expect(t.raw_request(b"GET /api/activities/home HTTP/1.1", b"X-Junk: " + value + b"\r\n"), 200)


@case("header-host-junk", only="gunicorn")
def _(t: HttpTransport):
    def with_host(host: bytes) -> Reply:
        return t.raw(b"GET /api/activities/home HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")

    expect(with_host(b"<script>alert(1)</script>"), 200)
    expect(with_host(b"evil.example:99999"), 200)
    expect(with_host(b"a" * 3000), 400)  # werkzeug refuses an over-long host name: the app's JSON 400


@case("gunicorn-rejects-header-over-8190", only="gunicorn")
def _(t: HttpTransport):
    reply = t.raw_request(b"GET /api/activities/home HTTP/1.1", b"X-Junk: " + b"a" * 9000 + b"\r\n")
    expect_gunicorn_rejection(reply, 431, "Request Header Fields Too Large")


@case("gunicorn-rejects-150-headers", only="gunicorn")
def _(t: HttpTransport):
    lines = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    expect_gunicorn_rejection(t.raw_request(b"GET /api/activities/home HTTP/1.1", lines), 431, "limit request headers")


@case("gunicorn-rejects-bad-header-lines", only="gunicorn")
def _(t: HttpTransport):
    for lines, reason in (
        (b"X-Junk: a\x00b\r\n", "Invalid HTTP Header"),
        (b"No colon here\r\n", "Invalid HTTP Header"),
        (b"X-Folded: a\r\n continued\r\n", "Bad Request"),
        (b"Host: second.example\r\n", "Bad Request"),
        (b"Content-Length: -1\r\n", "Invalid HTTP Header"),
        (b"Content-Length: 2\r\nContent-Length: 3\r\n", "Invalid HTTP Header"),
        (b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", "Invalid HTTP Header"),
        (b"Transfer-Encoding: gzip\r\n", "Invalid HTTP Header"),
    ):
        reply = t.raw_request(b"POST /api/activities HTTP/1.1", b"Content-Type: application/json\r\n" + lines, b"{}")
        expect_gunicorn_rejection(reply, 400, reason)


# -- query strings -------------------------------------------------------------------------------------
def _search_case(id_: str, query: str, only: str | None = None, status: int | None = None):
    def run(t: Transport):
        reply = t.get(f"/api/activities/search?{query}")
        if status is None:
            expect_search(reply)
        else:
            expect(reply, status)

    CORPUS.append(Case(id_, run, only))


_search_case("query-term-4000-chars", "term=" + "a" * 4000)
_search_case("query-term-990-words", "term=" + "+".join(["a"] * 990))
# Each word adds a LIKE term to one AND chain; SQLite refuses an expression deeper than 1000 and a
# LIKE pattern over 50,000 bytes: the app must refuse such terms itself (422), not fail (500).
_search_case("query-term-1000-words", "term=" + "+".join(["a"] * 1000))
_search_case("query-250-params", "term=cloud&" + "&".join(f"p{i}=%3C" for i in range(250)), status=200)
_search_case("query-term-twice", "term=cloud&term=%27%3B+DROP+TABLE+users", status=200)
_search_case("query-bad-percent", "term=%zz%25%", status=200)
_search_case("query-invalid-utf8", "term=%FF%FE%C0%AF", status=200)
_search_case("query-encoded-surrogate", "term=%ED%A0%80", status=200)
_search_case("query-nul", "term=a%00b", status=200)
_search_case("query-emoji", "term=" + "%F0%9F%9A%80" * 300)
_search_case("query-credentials-redacted", "token=s3cret&api_key=k&term=cloud", status=200)
_search_case("query-no-equals", "term&&&=&==", status=422)
_search_case("query-blank-is-422", "term=+%09%0A+", status=422)
_search_case("query-term-100k-chars", "term=" + "a" * 100_000, only="flask")
_search_case("query-term-5000-words", "term=" + "+".join(["a"] * 5000), only="flask")


@case("query-on-every-get-route")
def _(t: Transport):
    junk = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in INJECTIONS.items() if len(v) < 100)
    for route, allowed in ROUTES.items():
        if "GET" in allowed and route != "/rollbar/test/exception":
            expect(t.get(route + ("&" if "?" in route else "?") + junk), 200)


@case("gunicorn-rejects-request-line-over-4094", only="gunicorn")
def _(t: HttpTransport):
    reply = t.get("/api/activities/search?term=" + "a" * GUNICORN_LINE_LIMIT)
    expect_gunicorn_rejection(reply, 414, "Request Line is too large")


# -- path tricks -------------------------------------------------------------------------------------
PATH_CASES = {
    "dotdot": ("/api/activities/..", 404),
    "dotdot-up": ("/api/activities/../health-check", 404),
    "encoded-dotdot": ("/api/activities/%2e%2e/%2e%2e/api/health-check", 404),
    "encoded-dotdot-upper": ("/api/activities/%2E%2E%2Fhealth-check", 404),
    # werkzeug's test client reads "//api" as a host name; gunicorn passes the path on and the app
    # routes it as /api/activities/home.
    "leading-double-slash": ("//api/activities/home", (200, 404)),
    "encoded-slash-in-handle": ("/api/activities/@worf%2F..%2F..%2Fhealth-check", 404),
    "encoded-slash-in-messages": ("/api/messages/@..%2Fbayko", 404),
    "nul-in-handle": ("/api/activities/@worf%00", 404),
    "nul-alone": ("/api/activities/%00", 404),
    "nul-in-uuid": ("/api/activities/{crud}%00", 404),
    "uuid-upper-case": ("/api/activities/{CRUD}", 200),
    "uuid-nil": ("/api/activities/00000000-0000-0000-0000-000000000000", 404),
    "uuid-braces": ("/api/activities/%7B{crud}%7D", 404),
    "uuid-reply-extra-segment": ("/api/activities/{crud}/reply/..", 404),
    "trailing-slash": ("/api/activities/home/", 404),
    "upper-case-path": ("/API/ACTIVITIES/HOME", 404),
    "matrix-param": ("/api/activities/home;jsessionid=1", 404),
    "backslashes": ("/api\\activities\\home", 404),
    "long-path-4000": ("/api/activities/" + "a" * 4000, 404),
    "long-handle-3000": ("/api/activities/@" + "w" * 3000, 404),
    "unicode-handle": ("/api/activities/@%C3%BC%F0%9F%9A%80", 404),
    "unicode-messages-handle": ("/api/messages/@w%C3%B6rf", 404),
    "invalid-utf8-handle": ("/api/activities/@%FF%FE", 404),
    "encoded-surrogate-handle": ("/api/activities/@%ED%A0%80", 404),
    "handle-with-at-signs": ("/api/activities/@@@worf", 404),
    "handle-empty": ("/api/activities/@", 404),
    "percent-handle": ("/api/activities/@%25", 404),
    "rollbar-dotdot": ("/rollbar/test/..%2Fexception", 404),
    "absolute-form": ("http://evil.example/api/health-check", (200, 404)),
}


def _path_case(label: str, target: str, status):
    def run(t: Transport):
        resolved = target
        if "{CRUD}" in target:
            resolved = target.replace("{CRUD}", t.fill("{crud}").upper())
        expect(t.get(resolved), status)

    CORPUS.append(Case(f"path-{label}", run))


for _label, (_target, _status) in PATH_CASES.items():
    _path_case(_label, _target, _status)


@case("path-merged-slashes-redirect")
def _(t: Transport):
    # werkzeug merges repeated slashes with a 308 redirect. Flask returns routing redirects without
    # calling error handlers, so this body is werkzeug's small HTML page: a redirect, not an error.
    reply = t.get("/api//activities//home")
    assert reply.status == 308, reply
    assert reply.headers["location"].endswith("/api/activities/home")


@case("path-very-long-100k", only="flask")
def _(t: Transport):
    expect(t.get("/api/activities/@" + "a" * 100_000), 404)


@case("gunicorn-rejects-raw-bytes-in-request-line", only="gunicorn")
def _(t: HttpTransport):
    for line in (
        b"GET /api/activities/@worf\x00 HTTP/1.1",
        "GET /api/activities/@\u00fc\U0001f680 HTTP/1.1".encode(),
        b"GET /api/activities/@\xff\xfe HTTP/1.1",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello on the plain port
    ):
        expect_gunicorn_rejection(t.raw_request(line), 400, "Invalid Request Line")
    expect_gunicorn_rejection(t.raw_request(b"GET /api/activities/@a b HTTP/1.1"), 400, "Invalid HTTP Version")
    expect_gunicorn_rejection(t.raw_request(b"GET /api/health-check HTTP/9.9"), 400, "Invalid HTTP Version")
    for method in (b"get", b"G@T"):
        expect_gunicorn_rejection(t.raw_request(method + b" /api/health-check HTTP/1.1"), 400, "Invalid Method")


@case("odd-but-valid-request-lines", only="gunicorn")
def _(t: HttpTransport):
    expect(t.raw(b"GET /api/health-check HTTP/1.0\r\n\r\n"), 200)
    expect(t.raw_request(b"OPTIONS * HTTP/1.1"), 404)
    expect(t.raw_request(b"CONNECT 127.0.0.1:80 HTTP/1.1"), 404)
    expect(t.raw_request(b"GET /api/activities/home#fragment HTTP/1.1"), 200)


# -- the browser relay with garbage --------------------------------------------------------------
def _relay(t: Transport, body: bytes, content_type: str | None = "application/x-protobuf", **headers) -> Reply:
    sent = {"Origin": FRONTEND, **headers}
    if content_type is not None:
        sent["Content-Type"] = content_type
    return t.request("POST", TRACES, sent, body)


def _relay_case(
    id_: str,
    status: int,
    body: bytes,
    content_type: str | None = "application/x-protobuf",
    codes: list[str] | None = None,
    **headers,
):
    def run(t: Transport):
        reply = _relay(t, body, content_type, **headers)
        # 429 is a right answer too: the relay rate-limits each client, and the corpus is a burst.
        expect(reply, (status, 429))
        if reply.status == 429:
            assert int(reply.headers["retry-after"]) >= 1
        elif codes is not None:
            assert reply.json()["errors"] == codes, reply
        if reply.status == 204:
            assert reply.body == b""

    CORPUS.append(Case(f"relay-{id_}", run))


_JSON = "application/json"
_MALFORMED = ["otlp_malformed"]
_relay_case("random-bytes", 400, bytes(range(256)) * 64, codes=_MALFORMED)
_relay_case("truncated-protobuf", 400, b"\x0a\xff\xff\xff\xff\x0f", codes=_MALFORMED)
_relay_case("protobuf-group-tags", 400, b"\x0b" * 200 + b"\x0c" * 200, codes=_MALFORMED)
_relay_case("protobuf-nested-too-deep", 400, b"\x0a\x7f" * 2000, codes=_MALFORMED)
_relay_case("invalid-json", 400, b'{"resourceSpans": [', _JSON, codes=_MALFORMED)
_relay_case("json-wrong-shape", 400, b'{"resourceSpans": "<script>"}', _JSON, codes=_MALFORMED)
_relay_case("json-nested-100k", 400, b"[" * 100_000 + b"]" * 100_000, _JSON, codes=_MALFORMED)
_relay_case("json-not-utf8", 400, b'{"resourceSpans": ["\xff\xfe"]}', _JSON, codes=_MALFORMED)
_relay_case("json-kind-1e400", 400, export_json().replace(b'"kind": 3', b'"kind": 1e400'), _JSON, _MALFORMED)
_relay_case("json-kind-nan", 400, export_json().replace(b'"kind": 3', b'"kind": NaN'), _JSON, _MALFORMED)
_relay_case(
    "json-time-overflows-uint64",
    400,
    export_json([json_span(startTimeUnixNano="9" * 30)]),
    _JSON,
    codes=_MALFORMED,
)
_relay_case(
    "json-base64-ids", 400, export_json([json_span(traceId="W47/95gDgQPSabYzgT/GDA==")]), _JSON, ["otlp_invalid_id"]
)
_relay_case(
    "another-service",
    400,
    export_protobuf(resource={"service.name": "backend-flask"}),
    codes=["otlp_service_not_allowed"],
)
_relay_case("server-span", 400, export_json([json_span(kind=2)]), _JSON, ["otlp_span_kind_not_allowed"])
_relay_case("frontend-json", 204, export_json(), _JSON)
_relay_case("frontend-protobuf-identity-encoding", 204, export_protobuf(), **{"Content-Encoding": "identity"})
_relay_case("empty", 204, b"")
_relay_case(
    "gzip-claimed-not-gzip",
    415,
    b"not gzip at all",
    codes=["unsupported_content_encoding"],
    **{"Content-Encoding": "gzip"},
)
_relay_case("exactly-512k", 400, b"\x00" * RELAY_MAX, codes=_MALFORMED)
_relay_case("over-512k", 413, b"\x00" * (RELAY_MAX + 1))
_relay_case("text-plain", 415, b"spans", "text/plain")
_relay_case("no-content-type", 415, b"spans", None)
_relay_case("no-origin", 403, b"\x00", Origin="")
_relay_case("evil-origin", 403, b"\x00", Origin="http://evil.example")
_relay_case("origin-prefix-trick", 403, b"\x00", Origin=FRONTEND + ".evil.example")
_relay_case("origin-sql", 403, b"\x00", Origin="' OR 1=1 --")


@case("relay-chunked-over-512k", only="gunicorn")
def _(t: HttpTransport):
    # The relay lowers the body limit to 512 KiB; a chunked body has no Content-Length to check first.
    headers = f"Origin: {FRONTEND}\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n"
    reply = t.raw_request(f"POST {TRACES} HTTP/1.1".encode(), headers.encode(), _chunked(b"\x00" * (RELAY_MAX + 1000)))
    expect(reply, (413, 429))


@case("relay-flood-is-rate-limited-with-json")
def _(t: Transport):
    statuses = set()
    for _ in range(30):
        reply = expect(_relay(t, export_protobuf()), (204, 429))
        statuses.add(reply.status)
    assert 429 in statuses


# -- the runs --------------------------------------------------------------------------------------
def _params(transport: str):
    return [pytest.param(c, id=c.id) for c in CORPUS if c.only in (None, transport)]


def test_corpus_ids_are_unique():
    ids = [c.id for c in CORPUS]
    assert len(ids) == len(set(ids))
    assert len(ids) > 250


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def corpus_client(request, tmp_path_factory):
    """One app per database for the whole corpus, as the gunicorn run has one server: no case depends
    on another's writes (a new app per case was 174 of this module's 183 s)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'cruddur.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        url = create_database(server)
        request.addfinalizer(lambda: drop_database(server, url))
    return create_app(seeded_config(url)).test_client()


@pytest.mark.parametrize("hostile", _params("flask"))
def test_flask_client(corpus_client, hostile: Case):
    hostile.run(FlaskTransport(corpus_client))


@pytest.fixture(scope="module")
def secrets():
    """Credentials unique to this run: finding one in a sink or a log line is a leak."""
    tag = uuid.uuid4().hex
    return {
        "ROLLBAR_ACCESS_TOKEN": f"rollbar-token-{tag}",
        "OTEL_EXPORTER_OTLP_HEADERS": f"x-honeycomb-team=honeycomb-key-{tag}",
    }


@pytest.fixture(scope="module")
def gunicorn_server(tmp_path_factory, stand_ins, secrets):
    """One real gunicorn server for the module (1 sync worker, all four integrations on)."""
    server = AppServer({**stand_ins.env, **secrets}, workers=1, log_dir=tmp_path_factory.mktemp("hostile-gunicorn"))
    server.start()
    server.initial_workers = server.wait_for_workers()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http_transport(gunicorn_server):
    """Raw HTTP to that server."""
    return HttpTransport(gunicorn_server)


@pytest.mark.slow
@pytest.mark.parametrize("hostile", _params("gunicorn"))
def test_gunicorn(http_transport, hostile: Case):
    hostile.run(http_transport)


@pytest.mark.slow
def test_gunicorn_survived_the_corpus(gunicorn_server, http_transport):
    """Runs last: the same worker still serves, and nothing crashed or timed out along the way."""
    expect(http_transport.get("/api/health-check"), 200)
    assert gunicorn_server.worker_pids() == gunicorn_server.initial_workers
    stderr = gunicorn_server.stderr_text()
    for sign in ("Traceback", "WORKER TIMEOUT", "Worker failed", "was sent SIGKILL"):
        assert sign not in stderr, stderr[-3000:]


@pytest.mark.slow
def test_gunicorn_telemetry_survived_the_corpus(gunicorn_server, http_transport, stand_ins, secrets):
    """Runs last: every integration still on, X-Ray got nothing it would refuse, no secret in any sink,
    no traceback, and no log line echoes a trace header value in full."""
    integrations = http_transport.get("/api/health-check").json()["integrations"]
    for name in ("opentelemetry", "xray", "cloudwatch", "rollbar"):
        assert integrations[name]["enabled"] is True, (name, integrations[name])
    assert integrations["xray"]["rerooted"] > 0  # the old and future X-Ray roots
    assert integrations["xray"]["contained_errors"] == 0
    gunicorn_server.stop()  # flushes every integration
    xray = stand_ins.xray
    assert xray.segments(), "X-Ray got segments"
    assert xray.rejected() == [], "documents X-Ray would refuse"
    sink_texts = {
        "opentelemetry": repr(stand_ins.otlp.spans()),
        "xray": repr(xray.documents()),
        "rollbar": repr(stand_ins.rollbar.payloads()) + repr(stand_ins.rollbar.headers()),
        "cloudwatch": repr(stand_ins.moto.events(stand_ins.log_group)),
        "stdout": gunicorn_server.stdout_text(),
        "stderr": gunicorn_server.stderr_text(),
    }
    assert stand_ins.otlp.spans() and stand_ins.moto.events(stand_ins.log_group)
    leaked = ["s3cret", secrets["ROLLBAR_ACCESS_TOKEN"], secrets["OTEL_EXPORTER_OTLP_HEADERS"].split("=", 1)[1]]
    for sink, text in sink_texts.items():
        for secret in leaked:
            if sink == "rollbar" and secret == secrets["ROLLBAR_ACCESS_TOKEN"]:
                continue  # the token authenticates each item: it is meant to reach Rollbar
            assert secret not in text, (sink, secret)
    logs = sink_texts["stdout"] + sink_texts["cloudwatch"] + sink_texts["stderr"]
    assert "Traceback" not in logs
    # Spans may record an exception the app handled (its stack trace is span data): only 4xx here.
    server_spans = [s for s in stand_ins.otlp.spans() if s["kind"] == "SERVER"]
    statuses = {
        s["attributes"].get("http.response.status_code", s["attributes"].get("http.status_code")) for s in server_spans
    }
    assert statuses and all(isinstance(code, int) and code < 500 for code in statuses), statuses
    echoed = [value[:80] for value in TRACE_HEADER_VALUES if len(value) > 300 and value in logs]
    assert echoed == [], echoed
