"""Running counts of the traces an agent's stand-in decoded: traces, spans and SQL spans by request path.

The peer stand-ins (Datadog agent, Sentry envelopes, Elastic APM intake, and the OTLP receiver for
OpenTelemetry's zero-code agent) receive tens of thousands of traces in a benchmark run; this keeps
counts instead of every span, plus the first request span and the first SQL span seen in full, so
a report can say what each agent records.
"""

import threading
from collections import Counter


class TraceTally:
    """Thread-safe counts, keyed by a name (a service or a project) then by request path."""

    def __init__(self):
        """Empty."""
        self._lock = threading.Lock()
        self._by_name: dict[str, dict] = {}

    def add(self, name, path, spans, sql_spans, request_span=None, sql_span=None, span_names=()):
        """Count one trace of `name` for the request to `path`.

        `spans` counts every span the agent recorded for the request, its request span (root)
        included; `request_span` and `sql_span` are kept as examples (attributes as delivered).
        """
        with self._lock:
            entry = self._entry(name)
            entry["traces"] += 1
            entry["spans"] += spans
            entry["sql_spans"] += sql_spans
            row = entry["by_path"].setdefault(path, {"traces": 0, "spans": 0, "sql_spans": 0})
            row["traces"] += 1
            row["spans"] += spans
            row["sql_spans"] += sql_spans
            entry["names"].update(span_names)
            examples = entry["examples"]
            if request_span is not None:
                examples.setdefault(path, {})["request"] = examples.get(path, {}).get("request") or request_span
            if sql_span is not None:
                examples.setdefault(path, {})["sql"] = examples.get(path, {}).get("sql") or sql_span

    def add_other(self, name):
        """Count one trace of `name` that is not a request (a statement at startup, say)."""
        with self._lock:
            self._entry(name)["other_traces"] += 1

    def _entry(self, name):
        return self._by_name.setdefault(
            name,
            {
                "traces": 0,
                "other_traces": 0,
                "spans": 0,
                "sql_spans": 0,
                "by_path": {},
                "names": Counter(),
                "examples": {},
            },
        )

    def summary(self):
        """{name: {traces, other_traces, spans, sql_spans, by_path, span_names, examples: {path: {request, sql}}}}."""
        with self._lock:
            return {
                name: {
                    "traces": e["traces"],
                    "other_traces": e["other_traces"],
                    "spans": e["spans"],
                    "sql_spans": e["sql_spans"],
                    "by_path": {path: dict(row) for path, row in e["by_path"].items()},
                    "span_names": dict(e["names"].most_common(20)),
                    "examples": dict(e["examples"]),
                }
                for name, e in self._by_name.items()
            }

    def reset(self):
        """Forget everything."""
        with self._lock:
            self._by_name.clear()
