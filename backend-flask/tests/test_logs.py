"""Structured log lines: one JSON object per line, UTC times, trace ids, levels by status."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime

from cruddur.logs import JsonFormatter


def lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_access_log_fields_and_levels(client, capsys):
    client.get("/api/activities/search?term=cloud")
    client.get("/api/nothing")
    client.get("/rollbar/test/exception")
    access = [line for line in lines(capsys.readouterr().out) if line["logger"] == "cruddur.access"]
    assert [(a["status"], a["level"]) for a in access] == [(200, "INFO"), (404, "WARNING"), (500, "ERROR")]
    first = access[0]
    assert first["path"] == "/api/activities/search?term=cloud"
    assert first["method"] == "GET" and first["duration_ms"] >= 0
    assert first["remote_addr"] == "127.0.0.1" and "user_agent" in first
    assert len(first["trace_id"]) == 32 and len(first["span_id"]) == 16
    assert first["xray_trace_id"] == f"1-{first['trace_id'][:8]}-{first['trace_id'][8:]}"


def test_times_are_utc_whatever_the_machine_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        line = json.loads(JsonFormatter().format(record))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    logged = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs((logged - datetime.fromtimestamp(record.created, UTC)).total_seconds()) < 1
    assert line["message"] == "hello world"


def test_a_record_is_formatted_once_for_every_handler():
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "once", None, None)
    first = JsonFormatter().format(record)
    record.msg = "changed later"
    assert JsonFormatter().format(record) is first
