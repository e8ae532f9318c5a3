"""Continuing the caller's trace: W3C `traceparent` always, other header formats through one hook.

`add_propagator(app, propagator)` appends another header format (X-Ray's, from the xray package);
`traceparent` is read first and wins. Such a propagator may record its header's decision with
`with_caller_decision`, and for a header that names a trace but no parent span, `adopt_trace_id`
makes that id the request's trace id. `caller_decision` is then one decision for all.
"""

from __future__ import annotations

import contextvars

from flask import Flask
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator, default_getter
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

EXTENSION = "cruddur.propagators"  # app.extensions: the header formats beyond W3C, in order
_CALLER_DECISION = otel_context.create_key("cruddur-caller-decision")
_adopted_trace_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("cruddur_adopted_trace_id", default=None)


class _Propagators(CompositePropagator):
    """W3C Trace Context and then the added formats; each extraction starts with no adopted trace id."""

    def extract(self, carrier, context=None, getter=default_getter):
        _adopted_trace_id.set(None)
        return super().extract(carrier, context, getter)


def install(app: Flask) -> None:
    """W3C Trace Context only, until `add_propagator` adds others (process-wide: the app built last wins)."""
    app.extensions[EXTENSION] = []
    propagate.set_global_textmap(_Propagators([TraceContextTextMapPropagator()]))


def add_propagator(app: Flask, propagator: TextMapPropagator) -> None:
    """Also continue (and send) another header format; `traceparent` still wins when both are present."""
    added = app.extensions.setdefault(EXTENSION, [])
    added.append(propagator)
    propagate.set_global_textmap(_Propagators([TraceContextTextMapPropagator(), *added]))


def with_caller_decision(context: otel_context.Context, decided: bool | None) -> otel_context.Context:
    """`context` carrying the caller's decision: True (sampled), False (not), None (none: decide locally)."""
    return otel_context.set_value(_CALLER_DECISION, (decided,), context)


def adopt_trace_id(trace_id: int) -> None:
    """The trace id the next root span of this request gets (a caller named the trace, not a parent)."""
    _adopted_trace_id.set(trace_id)


def caller_decision(context: otel_context.Context | None, parent: SpanContext | None) -> bool | None:
    """The caller's decision in `context` or its remote `parent`: True, False, or None (decide locally)."""
    recorded = otel_context.get_value(_CALLER_DECISION, context)
    if recorded is not None:
        return recorded[0]
    if parent is not None and parent.is_valid and parent.is_remote:
        return parent.trace_flags.sampled
    return None


class RootAdoptingIdGenerator(AwsXRayIdGenerator):
    """X-Ray-compatible ids (the first 8 hex digits are the epoch seconds); an adopted trace id first."""

    def generate_trace_id(self) -> int:
        adopted = _adopted_trace_id.get()
        if adopted is not None:
            _adopted_trace_id.set(None)
            return adopted
        return super().generate_trace_id()
