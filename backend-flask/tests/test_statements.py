"""SQL statements per write request, on SQLite and PostgreSQL: each one a span, and no more than needed.

Every statement costs a span (and an X-Ray subsegment when sampled), so the count per request is
pinned here. The database's own record of what it executed is the reference: SQLite's trace
callback (every statement the library runs, BEGIN and COMMIT included) and PostgreSQL's statement
log, sent to this connection as notices (`log_statement = all`, `client_min_messages = log`). A
statement run past the instrumentation (`conn.commit()`, `conn.execute`, a plain psycopg cursor)
shows up there and not among the spans.
"""

from __future__ import annotations

import re
import uuid

import psycopg
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cruddur import create_app

# What the parameters and literals look like in each record: `?`, `%s`, `$1`, 'text', 42, NULL.
_VALUE = re.compile(r"'(?:[^']|'')*'|\$\d+|%s|\?|\b\d+\b|\bNULL\b", re.IGNORECASE)


def shape(statement: str) -> str:
    """A statement with its values and placeholders as `?` and its whitespace collapsed."""
    return " ".join(_VALUE.sub("?", statement).split())


class Traced:
    """The app with every span recorded in memory and the database's statement log of its connection."""

    def __init__(self, config):
        self.app = create_app(config)
        self.spans = InMemorySpanExporter()
        # Before the first request: the connection opens instrumented only when spans are read.
        self.app.extensions["cruddur.tracer_provider"].add_span_processor(SimpleSpanProcessor(self.spans))
        self.client = self.app.test_client()
        self.executed: list[str] = []
        connections = self.app.extensions["cruddur.connections"]
        conn = connections.get()  # SQLite: this thread's; PostgreSQL: the pool's only one (size 1)
        if isinstance(conn, psycopg.Connection):
            assert connections.size == 1, "the log is set on one pooled connection"
            with psycopg.Cursor(conn) as cursor:  # not a statement of any request
                cursor.execute("SET log_statement = 'all'")
                cursor.execute("SET client_min_messages = 'log'")
            conn.add_notice_handler(self._logged)
        else:
            conn.set_trace_callback(self.executed.append)
        connections.put(conn)

    def _logged(self, diagnostic) -> None:
        # "statement: BEGIN", "execute <unnamed>: SELECT ...", "execute _pg3_0: ..." (prepared).
        text = diagnostic.message_primary or ""
        if diagnostic.severity_nonlocalized == "LOG" and text.startswith(("statement: ", "execute ")):
            statement = text.split(": ", 1)[1]
            # The pool checks a connection with an empty query before lending it: no statement.
            if statement.strip():
                self.executed.append(statement)

    def post(self, path: str, body: dict):
        """POST; return the response, the SQL spans' statements and the statements the database ran."""
        self.spans.clear()
        self.executed.clear()
        response = self.client.post(path, json=body)
        spans = self.spans.get_finished_spans()
        server = [s for s in spans if s.parent is None]
        assert len(server) == 1
        trace_id = server[0].context.trace_id
        assert all(s.context.trace_id == trace_id for s in spans)
        sql = sorted((s for s in spans if "db.system" in s.attributes), key=lambda s: s.start_time)
        return response, [s.attributes["db.statement"] for s in sql], list(self.executed), len(spans)


@pytest.fixture
def traced(config):
    return Traced(config)


def verbs(statements: list[str]) -> list[str]:
    return [statement.split(None, 1)[0].upper() for statement in statements]


def check(traced: Traced, path: str, body: dict, status: int, expected: list[str]):
    """POST and check the status, the statements (by verb) and that each one executed is a span."""
    response, traced_statements, executed, span_count = traced.post(path, body)
    assert response.status_code == status, response.json
    assert executed, "the database's own log records nothing: the check would prove nothing"
    assert [shape(s) for s in traced_statements] == [shape(s) for s in executed]
    assert verbs(executed) == expected
    return response, span_count


def test_statements_per_post_are_few_and_every_one_is_a_span(traced):
    crud, spans = check(traced, "/api/activities", {"message": "one", "ttl": "1-day"}, 200, ["INSERT"])
    assert spans == 3  # server, create_activity, the INSERT
    assert (crud.json["handle"], crud.json["display_name"]) == ("andrewbrown", "Andrew Brown")

    reply, spans = check(
        traced,
        f"/api/activities/{crud.json['uuid']}/reply",
        {"message": "two"},
        200,
        ["BEGIN", "UPDATE", "INSERT", "COMMIT"],
    )
    assert spans == 5
    assert (reply.json["handle"], reply.json["expires_at"]) == ("andrewbrown", crud.json["expires_at"])

    first = {"message": "first", "user_receiver_handle": "garek"}
    check(traced, "/api/messages", first, 200, ["SELECT", "INSERT", "BEGIN", "INSERT", "INSERT", "COMMIT"])
    _, spans = check(traced, "/api/messages", {**first, "message": "next"}, 200, ["SELECT", "INSERT"])
    assert spans == 3


def test_statements_of_refused_posts(traced):
    crud = traced.client.post("/api/activities", json={"message": "parent", "ttl": "1-day"}).json
    response, traced_statements, executed, _ = traced.post("/api/activities", {"message": "", "ttl": "1-day"})
    assert (response.status_code, traced_statements, executed) == (422, [], [])  # validation alone
    check(traced, f"/api/activities/{crud['uuid']}/reply", {"message": ""}, 422, ["SELECT"])
    check(traced, f"/api/activities/{uuid.uuid4()}/reply", {"message": ""}, 404, ["SELECT"])
    check(traced, f"/api/activities/{uuid.uuid4()}/reply", {"message": "x"}, 404, ["BEGIN", "UPDATE", "ROLLBACK"])
    check(traced, "/api/messages", {"message": "hi", "user_receiver_handle": "nobody"}, 404, ["SELECT"])
    check(traced, "/api/messages", {"message": "", "user_receiver_handle": "worf"}, 422, ["SELECT"])
