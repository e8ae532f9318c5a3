"""Continuing the caller's trace, whichever header it sent.

`traceparent` and a complete `X-Amzn-Trace-Id` (Root and Parent) are continued by OpenTelemetry's
own propagators. An AWS load balancer, though, sends only `Root=` (it starts the trace but records
no segment), which AwsXRayPropagator ignores for want of a parent span id. For that case the
request's server span becomes the root of the caller's trace: the propagator notes the Root, and
the id generator hands it out as the next trace id.
"""

from __future__ import annotations

import contextvars

from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.textmap import default_getter
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator

_pending_root: contextvars.ContextVar[int | None] = contextvars.ContextVar("cruddur_xray_root", default=None)
XRAY_HEADER = "X-Amzn-Trace-Id"


def parse_root(header: str | None) -> int | None:
    """The trace id named by `Root=1-<8 hex>-<24 hex>` in an X-Ray header, or None."""
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "root":
            pieces = value.strip().split("-")
            if len(pieces) == 3 and pieces[0] == "1" and len(pieces[1]) == 8 and len(pieces[2]) == 24:
                try:
                    trace_id = int(pieces[1] + pieces[2], 16)
                except ValueError:
                    return None
                return trace_id or None
    return None


class XRayRootPropagator(AwsXRayPropagator):
    """AwsXRayPropagator that also continues a Root-only header (see module docstring)."""

    def extract(self, carrier, context=None, getter=default_getter):
        """Extract as AwsXRayPropagator does; remember a Root that came without a Parent."""
        _pending_root.set(None)  # a fresh decision for every request
        extracted = super().extract(carrier, context=context, getter=getter)
        if not trace.get_current_span(extracted).get_span_context().is_valid:
            values = getter.get(carrier, XRAY_HEADER)
            if values and len(values) == 1:
                _pending_root.set(parse_root(values[0]))
        return extracted


class RootAdoptingIdGenerator(AwsXRayIdGenerator):
    """X-Ray-compatible ids; the next trace id is the caller's Root when one is pending."""

    def generate_trace_id(self) -> int:
        """The pending Root (once), else a new X-Ray-compatible id."""
        pending = _pending_root.get()
        if pending is not None:
            _pending_root.set(None)
            return pending
        return super().generate_trace_id()
