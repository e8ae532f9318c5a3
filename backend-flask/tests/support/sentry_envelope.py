"""Sentry envelope endpoint stand-in: parses the envelopes sentry-sdk posts and counts transactions and spans.

As documented for SDKs (develop.sentry.dev, "Envelopes" and "Authentication"):

- ``POST /api/<project_id>/envelope/``, the DSN ``http://<public_key>@<host>/<project_id>``; the
  key comes in ``X-Sentry-Auth: Sentry sentry_key=<public_key>, sentry_version=7, ...`` (or the
  ``sentry_key`` query parameter); an unknown key is refused with 401.
- The body (gzip or deflate per ``Content-Encoding``) is a header line of JSON, then items: a
  header line of JSON with ``type`` and optionally ``length``, then the payload: ``length`` bytes
  when given, otherwise up to the next newline. A malformed envelope is refused with 400.
- Answer 200 ``{"id": <event_id>}``.

Item types counted: ``transaction`` (an event with ``contexts.trace``, the request, and ``spans``)
and ``client_report`` (``discarded_events``: what the SDK dropped and why, e.g. ``queue_overflow``).
Transactions are counted per project id (``TraceTally``): the request span is the transaction
itself (``op`` ``http.server``), its path from ``request.url``; SQL spans have an ``op`` starting with ``db``.
"""

import json
import re
import threading
from collections import Counter
from urllib.parse import parse_qs, urlsplit

from tests.support.faulty_http import BadRequest, FaultyHTTPServer, Response
from tests.support.trace_tally import TraceTally

PUBLIC_KEY = "0123456789abcdef0123456789abcdef"
_ENVELOPE_PATH = re.compile(r"^/api/(\d+)/envelope/$")
_AUTH_KEY = re.compile(r"sentry_key=([^,\s]+)")


def parse_envelope(body):
    """(envelope headers, [(item headers, payload bytes)]) of one envelope; BadRequest if malformed."""
    header_line, _, rest = body.partition(b"\n")
    try:
        headers = json.loads(header_line)
    except ValueError as error:
        raise BadRequest(f"envelope header is not JSON: {error}") from error
    if not isinstance(headers, dict):
        raise BadRequest("envelope header must be an object")
    items = []
    while rest.strip(b"\n"):
        item_line, _, rest = rest.partition(b"\n")
        if not item_line:
            continue
        try:
            item_headers = json.loads(item_line)
        except ValueError as error:
            raise BadRequest(f"item header is not JSON: {error}") from error
        if not isinstance(item_headers, dict) or "type" not in item_headers:
            raise BadRequest("item header must be an object with a type")
        length = item_headers.get("length")
        if length is not None:
            if len(rest) < length:
                raise BadRequest(f"item of length {length} but {len(rest)} bytes left")
            payload, rest = rest[:length], rest[length:]
            if rest.startswith(b"\n"):
                rest = rest[1:]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append((item_headers, payload))
    return headers, items


class SentryEnvelopeEndpoint(FaultyHTTPServer):
    """Answers as Sentry's ingestion does; counts transactions, spans and the SDK's own discard reports."""

    name = "sentry"

    def __init__(self, public_key=PUBLIC_KEY, **kwargs):
        """Accept envelopes signed with `public_key` (any project id)."""
        kwargs.setdefault("keep_requests", 100)
        super().__init__(**kwargs)
        self.public_key = public_key
        self.tally = TraceTally()
        self._counts_lock = threading.Lock()
        self._items: Counter[tuple[str, str]] = Counter()
        self._discarded: dict[str, Counter[str]] = {}

    def dsn(self, project_id):
        """The DSN that points sentry-sdk at this endpoint for `project_id`."""
        return f"http://{self.public_key}@{self.host}:{self.port}/{project_id}"

    def handle(self, request):
        """Parse one envelope and count its items."""
        url = urlsplit(request.path)
        match = _ENVELOPE_PATH.match(url.path)
        if request.method != "POST" or match is None:
            return super().handle(request)
        project = match.group(1)
        auth = _AUTH_KEY.search(request.headers.get("x-sentry-auth", ""))
        key = auth.group(1) if auth else (parse_qs(url.query).get("sentry_key") or [None])[0]
        if key != self.public_key:
            return Response.json(401, {"detail": "invalid api key"})
        headers, items = parse_envelope(request.body)
        for item_headers, payload in items:
            kind = item_headers["type"]
            with self._counts_lock:
                self._items[(project, kind)] += 1
            if kind == "transaction":
                self._transaction(project, _json(payload))
            elif kind == "client_report":
                self._client_report(project, _json(payload))
        return Response.json(200, {"id": headers.get("event_id")})

    def _transaction(self, project, event):
        trace = (event.get("contexts") or {}).get("trace") or {}
        if not trace.get("trace_id") or not trace.get("span_id"):
            raise BadRequest("a transaction needs contexts.trace with trace_id and span_id")
        if trace.get("op") != "http.server":
            self.tally.add_other(project)
            return
        spans = event.get("spans") or []
        sql = [s for s in spans if str(s.get("op", "")).startswith("db")]
        path = urlsplit((event.get("request") or {}).get("url", "")).path or event.get("transaction", "")
        request_span = {
            "transaction": event.get("transaction"),
            "op": trace.get("op"),
            "data": trace.get("data", {}),
            "tags": event.get("tags", {}),
            "request": event.get("request", {}),
            "breadcrumbs": len((event.get("breadcrumbs") or {}).get("values", [])),
        }
        self.tally.add(
            project,
            path,
            spans=1 + len(spans),
            sql_spans=len(sql),
            request_span=request_span,
            sql_span=sql[0] if sql else None,
            span_names=[trace.get("op", "")] + [s.get("op", "") for s in spans],
        )

    def _client_report(self, project, report):
        with self._counts_lock:
            counts = self._discarded.setdefault(project, Counter())
            for entry in report.get("discarded_events") or []:
                counts[f"{entry.get('reason')}:{entry.get('category')}"] += int(entry.get("quantity", 0))

    def reset_data(self):
        """Forget the counts."""
        self.tally.reset()
        with self._counts_lock:
            self._items.clear()
            self._discarded.clear()

    def summary(self):
        """Per project: the tally, items by type, and what the SDK reported discarding."""
        tally = self.tally.summary()
        with self._counts_lock:
            projects = {p for p, _ in self._items} | set(tally)
            return {
                project: {
                    **tally.get(project, {"traces": 0, "spans": 0, "sql_spans": 0, "by_path": {}}),
                    "items": {kind: n for (p, kind), n in self._items.items() if p == project},
                    "discarded": dict(self._discarded.get(project, {})),
                }
                for project in projects
            }


def _json(payload):
    try:
        return json.loads(payload)
    except ValueError as error:
        raise BadRequest(f"item payload is not JSON: {error}") from error
