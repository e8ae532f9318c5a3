"""Elastic APM Server stand-in: the intake API the Python agent posts to, decoded and counted.

As documented (Elastic APM Server, "Events intake API" and "APM Server information API"):

- ``POST /intake/v2/events``: ``Content-Type: application/x-ndjson``, the body possibly gzip or
  deflate (``Content-Encoding``). The first line must be ``{"metadata": {...}}`` with
  ``service.name``, ``service.agent.name`` and ``service.agent.version``; each further line holds
  one event: ``transaction``, ``span``, ``error``, ``metricset`` (or ``log``). Accepted: 202, empty.
  Refused: 400 ``{"accepted": n, "errors": [{"message": ...}]}``.
- ``GET /``: the server's information (``version``, ``build_date``, ``build_sha``, ``publish_ready``);
  the agent reads the version from it.

A span names its ``transaction_id``; the agent sends spans as they end, before their transaction,
so spans wait here until it arrives. Transactions of ``type`` ``request`` are counted per service
(``TraceTally``): the path from ``context.request.url.pathname``; a SQL span has ``type`` ``db`` (or ``type`` ``db.*``)
with a ``context.db.statement``; a compressed span (``composite``) stands for ``composite.count``
statements.
"""

import json
import threading
from collections import Counter

from tests.support.faulty_http import FaultyHTTPServer, Response
from tests.support.trace_tally import TraceTally

INTAKE_PATH = "/intake/v2/events"
SERVER_VERSION = "8.15.0"
EVENT_TYPES = ("transaction", "span", "error", "metricset", "log")


class ElasticAPMIntake(FaultyHTTPServer):
    """Answers as APM Server does; counts transactions, spans, SQL spans and metricsets per service."""

    name = "elastic-apm"

    def __init__(self, **kwargs):
        """Same arguments as ``FaultyHTTPServer``."""
        kwargs.setdefault("keep_requests", 100)
        super().__init__(**kwargs)
        self.tally = TraceTally()
        self._events_lock = threading.Lock()
        self._pending: dict[str, dict] = {}
        self._events: Counter[tuple[str, str]] = Counter()
        self._statements: Counter[str] = Counter()

    def handle(self, request):
        """Server information, or one intake request."""
        path = request.path.split("?")[0]
        if request.method == "GET" and path == "/":
            return Response.json(
                200,
                {
                    "build_date": "2024-08-01T00:00:00Z",
                    "build_sha": "0" * 40,
                    "publish_ready": True,
                    "version": SERVER_VERSION,
                },
            )
        if request.method != "POST" or path != INTAKE_PATH:
            return super().handle(request)
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-ndjson":
            return _refused(0, "Content-Type must be application/x-ndjson")
        lines = [line for line in request.body.split(b"\n") if line.strip()]
        try:
            documents = [json.loads(line) for line in lines]
        except ValueError as error:
            return _refused(0, f"invalid JSON: {error}")
        if not documents or not isinstance(documents[0], dict) or "metadata" not in documents[0]:
            return _refused(0, "the first line must be a metadata object")
        service = documents[0]["metadata"].get("service") or {}
        agent = service.get("agent") or {}
        if not service.get("name") or not agent.get("name") or not agent.get("version"):
            return _refused(0, "metadata needs service.name, service.agent.name and service.agent.version")
        for accepted, document in enumerate(documents[1:]):
            if not isinstance(document, dict) or len(document) != 1 or next(iter(document)) not in EVENT_TYPES:
                return _refused(accepted, f"line {accepted + 2}: one event of {', '.join(EVENT_TYPES)} per line")
        for document in documents[1:]:
            ((kind, event),) = document.items()
            self._event(service["name"], kind, event)
        return Response(202, b"", "application/json")

    def _event(self, service, kind, event):
        with self._events_lock:
            self._events[(service, kind)] += 1
            if kind == "span":
                pending = self._pending.setdefault(
                    event.get("transaction_id", ""), {"spans": 0, "sql": 0, "example": None, "names": []}
                )
                pending["spans"] += 1
                pending["names"].append(f"{event.get('type')}.{event.get('subtype')}")
                if _is_sql(event):
                    pending["sql"] += 1
                    self._statements[service] += (event.get("composite") or {}).get("count", 1)
                    pending["example"] = pending["example"] or event
                return
            if kind != "transaction":
                return
            pending = self._pending.pop(event.get("id", ""), {"spans": 0, "sql": 0, "example": None, "names": []})
        if event.get("type") != "request":
            self.tally.add_other(service)
            return
        url = ((event.get("context") or {}).get("request") or {}).get("url") or {}
        self.tally.add(
            service,
            url.get("pathname") or event.get("name", ""),
            spans=1 + pending["spans"],
            sql_spans=pending["sql"],
            request_span={k: event.get(k) for k in ("name", "type", "result", "outcome", "context", "span_count")},
            sql_span=pending["example"],
            span_names=[event.get("type", "")] + pending["names"],
        )

    def reset_data(self):
        """Forget the counts."""
        self.tally.reset()
        with self._events_lock:
            self._pending.clear()
            self._events.clear()
            self._statements.clear()

    def summary(self):
        """Per service: the tally, events by type, SQL statements (compressed spans expanded)."""
        tally = self.tally.summary()
        with self._events_lock:
            services = {s for s, _ in self._events} | set(tally)
            unmatched = sum(p["spans"] for p in self._pending.values())
            return {
                "services": {
                    service: {
                        **tally.get(service, {"traces": 0, "spans": 0, "sql_spans": 0, "by_path": {}}),
                        "events": {kind: n for (s, kind), n in self._events.items() if s == service},
                        "sql_statements": self._statements.get(service, 0),
                    }
                    for service in services
                },
                "spans_without_transaction": unmatched,
            }


def _is_sql(span):
    kind = str(span.get("type", ""))
    statement = ((span.get("context") or {}).get("db") or {}).get("statement")
    return (kind == "db" or kind.startswith("db.")) and bool(statement)


def _refused(accepted, message):
    return Response.json(400, {"accepted": accepted, "errors": [{"message": message}]})
