"""Continuing the caller's trace, whichever header it sent, and reading the caller's sampling decision.

`traceparent` is continued by OpenTelemetry's W3C propagator and wins when both headers are present.
An `X-Amzn-Trace-Id` is read here: `Root=` names the trace, `Parent=` (optional) the caller's span and
`Sampled=` (optional) its decision: `1` or `0`, or `?` / absent for no decision, which is what an
AWS load balancer sends (it starts the trace and records nothing). With a Parent, the request's
server span becomes the child of the caller's span; without one (Root only) it becomes the root of
the caller's trace: the propagator notes the Root and the id generator hands it out as the next
trace id. OpenTelemetry's own AwsXRayPropagator ignores both a Root-only header and `Sampled=?`.

`caller_decision` tells the sampler (telemetry/sampling.py) and X-Ray (telemetry/xray.py) what the
caller decided, so both tracers take one decision.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.textmap import default_getter
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.trace import SpanContext, TraceFlags

_pending_root: contextvars.ContextVar[int | None] = contextvars.ContextVar("cruddur_xray_root", default=None)
# The X-Ray header's decision ("1", "0", or "" for none), set only when that header names the trace.
_XRAY_SAMPLED = otel_context.create_key("cruddur-xray-sampled")
XRAY_HEADER = "X-Amzn-Trace-Id"
# Longer headers are not read: a real one (Root, Parent, Sampled, a few Self/Lineage fields) is far
# shorter, and the parsing cost of a caller's junk stays bounded.
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
    """The header's Root, Parent and Sampled, or None when it has no valid Root or is malformed.

    Keys are case-sensitive, as in the X-Ray SDKs. A part without `=`, a repeated key, or an
    invalid Root, Parent or Sampled value makes the whole header unreadable: a request with a
    header we cannot read starts its own trace. Other keys (Self, Lineage, custom data) are ignored.
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


def caller_decision(context: otel_context.Context | None, parent: SpanContext | None) -> bool | None:
    """The caller's decision for a request: True (sampled), False (not sampled), None (none: decide locally).

    `context` is the extracted (or current) context, `parent` the remote parent span context, if any.
    """
    xray = otel_context.get_value(_XRAY_SAMPLED, context)
    if xray is not None:
        return {"1": True, "0": False}.get(xray)
    if parent is not None and parent.is_valid and parent.is_remote:
        return parent.trace_flags.sampled
    return None


class XRayRootPropagator(AwsXRayPropagator):
    """Extracts an X-Ray header as the module docstring says; injects as AwsXRayPropagator does."""

    def extract(self, carrier, context=None, getter=default_getter):
        """Continue the X-Ray header's trace unless `traceparent` already named one."""
        _pending_root.set(None)  # a fresh decision for every request
        if context is None:
            context = otel_context.Context()
        if trace.get_current_span(context).get_span_context().is_valid:
            return context  # traceparent wins
        values = getter.get(carrier, XRAY_HEADER)
        if not values or len(values) != 1:
            return context
        header = parse_xray_header(values[0])
        if header is None:
            return context
        context = otel_context.set_value(_XRAY_SAMPLED, header.sampled, context)
        if header.parent_id is None:
            _pending_root.set(header.trace_id)
            return context
        flags = TraceFlags(TraceFlags.SAMPLED if header.sampled == "1" else TraceFlags.DEFAULT)
        parent = SpanContext(header.trace_id, header.parent_id, is_remote=True, trace_flags=flags)
        return trace.set_span_in_context(trace.NonRecordingSpan(parent), context)


class RootAdoptingIdGenerator(AwsXRayIdGenerator):
    """X-Ray-compatible ids; the next trace id is the caller's Root when one is pending."""

    def generate_trace_id(self) -> int:
        """The pending Root (once), else a new X-Ray-compatible id."""
        pending = _pending_root.get()
        if pending is not None:
            _pending_root.set(None)
            return pending
        return super().generate_trace_id()
