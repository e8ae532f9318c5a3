"""The current request's trace identity, in OpenTelemetry and X-Ray spellings."""

from __future__ import annotations

from opentelemetry import trace


def xray_trace_id(trace_id_hex: str) -> str:
    """The X-Ray spelling of a 32-hex W3C trace id: 1-<first 8 hex>-<last 24 hex>."""
    return f"1-{trace_id_hex[:8]}-{trace_id_hex[8:]}"


def current_ids() -> tuple[str | None, str | None, str | None]:
    """(trace_id, span_id, xray_trace_id) of the active span, or Nones outside any span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None, None
    trace_id = format(ctx.trace_id, "032x")
    return trace_id, format(ctx.span_id, "016x"), xray_trace_id(trace_id)
