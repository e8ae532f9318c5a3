"""The `X-Amzn-Trace-Id` header, continued and sent, plugged into OpenTelemetry's propagation hook.

`Root=` names the trace, `Parent=` (optional) the caller's span, `Sampled=` its decision (`?` or
absent: none, as an AWS load balancer sends). OpenTelemetry's AwsXRayPropagator ignores a Root-only
header and `Sampled=?`, so extraction is ours; injection is AwsXRayPropagator's, except that a
rerooted request (core.context.rerooted_xray_id) sends its fresh X-Ray root, as its segment has it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flask import Flask
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.textmap import default_getter, default_setter
from opentelemetry.trace import SpanContext, TraceFlags

from ..core.context import rerooted_xray_id
from ..otel.propagation import add_propagator, adopt_trace_id, with_caller_decision

XRAY_HEADER = "X-Amzn-Trace-Id"
# Longer headers are not read (a real one is far shorter): parsing a caller's junk costs bounded time.
MAX_XRAY_HEADER_CHARS = 1024
_ROOT = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")
_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
_DECISIONS = {"1": "1", "0": "0", "?": ""}


@dataclass(frozen=True)
class XRayHeader:
    """What an `X-Amzn-Trace-Id` says: the trace, the caller's span (or None), its decision ("1", "0", "")."""

    trace_id: int
    parent_id: int | None
    sampled: str


def parse_xray_header(value: str | None) -> XRayHeader | None:
    """The header's Root, Parent and Sampled, or None when it is malformed (a new trace starts then).

    Keys are case-sensitive, as in the X-Ray SDKs; other keys (Self, Lineage...) are ignored.
    """
    if not value or len(value) > MAX_XRAY_HEADER_CHARS:
        return None
    fields: dict[str, str] = {}
    for part in value.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, item = part.partition("=")
        key = key.strip()
        if not sep or key in fields:
            return None
        fields[key] = item.strip()
    root = _ROOT.fullmatch(fields.get("Root", ""))
    if root is None:
        return None
    trace_id = int(root.group(1) + root.group(2), 16)
    parent = fields.get("Parent")
    if parent is not None and not _SPAN_ID.fullmatch(parent):
        return None
    parent_id = int(parent, 16) if parent is not None else None
    sampled = _DECISIONS.get(fields.get("Sampled", "?"))
    if not trace_id or parent_id == 0 or sampled is None:
        return None
    return XRayHeader(trace_id, parent_id, sampled)


class XRayRootPropagator(AwsXRayPropagator):
    """Extracts an X-Ray header as the module docstring says; injects the segment's own trace id."""

    def extract(self, carrier, context=None, getter=default_getter):
        """Continue the X-Ray header's trace: a child of its Parent, or the root of its Root."""
        context = otel_context.Context() if context is None else context
        if trace.get_current_span(context).get_span_context().is_valid:
            return context  # traceparent wins
        values = getter.get(carrier, XRAY_HEADER)
        header = parse_xray_header(values[0]) if values and len(values) == 1 else None
        if header is None:
            return context
        context = with_caller_decision(context, {"1": True, "0": False}.get(header.sampled))
        if header.parent_id is None:
            adopt_trace_id(header.trace_id)
            return context
        flags = TraceFlags(TraceFlags.SAMPLED if header.sampled == "1" else TraceFlags.DEFAULT)
        parent = SpanContext(header.trace_id, header.parent_id, is_remote=True, trace_flags=flags)
        return trace.set_span_in_context(trace.NonRecordingSpan(parent), context)

    def inject(self, carrier, context=None, setter=default_setter) -> None:
        rerooted = rerooted_xray_id()
        span_context = trace.get_current_span(context).get_span_context()
        if rerooted is None or not span_context.is_valid:
            super().inject(carrier, context, setter)
            return
        sampled = 1 if span_context.trace_flags.sampled else 0
        setter.set(carrier, XRAY_HEADER, f"Root={rerooted};Parent={span_context.span_id:016x};Sampled={sampled}")


def init_app(app: Flask) -> None:
    """Continue and send X-Ray headers in this app (whether or not X-Ray itself is on)."""
    add_propagator(app, XRayRootPropagator())
