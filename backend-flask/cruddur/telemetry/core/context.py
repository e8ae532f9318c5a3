"""The current request's trace identity, in OpenTelemetry and X-Ray spellings."""

from __future__ import annotations

import time

from flask import has_request_context, request
from opentelemetry import trace

# X-Ray reads a trace id's first 8 hex digits as the Unix time of the original request and refuses
# ids it considers too old: "spans with an embedded timestamp more than 30 days ago are rejected"
# (opentelemetry-sdk-extension-aws, AwsXRayIdGenerator, citing the X-Ray developer guide's "Sending
# trace data": trace ids). A request cannot have started after its segment is sent either, so an id
# dated in the future is refused too; a small allowance covers callers whose clocks run ahead.
XRAY_MAX_AGE_SECONDS = 30 * 24 * 3600
# Segments reach X-Ray up to a few seconds after the decision (the daemon batches): decide with margin.
XRAY_AGE_MARGIN_SECONDS = 3600
XRAY_MAX_FUTURE_SECONDS = 300
_REROOTED_KEY = "cruddur.xray_trace_id"  # in the WSGI environ: one request, whatever contexts are pushed


def xray_trace_id(trace_id_hex: str) -> str:
    """The X-Ray spelling of a 32-hex W3C trace id: 1-<first 8 hex>-<last 24 hex>."""
    return f"1-{trace_id_hex[:8]}-{trace_id_hex[8:]}"


def xray_accepts(trace_id: int, now: float | None = None) -> bool:
    """Whether X-Ray would take a segment of this trace id (its embedded time is in X-Ray's window)."""
    now = time.time() if now is None else now
    epoch = trace_id >> 96
    return now - XRAY_MAX_AGE_SECONDS + XRAY_AGE_MARGIN_SECONDS <= epoch <= now + XRAY_MAX_FUTURE_SECONDS


def set_rerooted_xray_id(xray_id: str) -> None:
    """Record that this request's X-Ray segment uses `xray_id`, not the OpenTelemetry trace id."""
    request.environ[_REROOTED_KEY] = xray_id


def rerooted_xray_id() -> str | None:
    """The fresh X-Ray trace id of this request when its own id was one X-Ray refuses, else None."""
    return request.environ.get(_REROOTED_KEY) if has_request_context() else None


def current_ids() -> tuple[str | None, str | None, str | None]:
    """(trace_id, span_id, xray_trace_id) of the active span, or Nones outside any span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None, None
    trace_id = format(ctx.trace_id, "032x")
    return trace_id, format(ctx.span_id, "016x"), rerooted_xray_id() or xray_trace_id(trace_id)
