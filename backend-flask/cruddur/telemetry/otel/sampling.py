"""One sampling decision per request, taken by the OpenTelemetry sampler and followed by X-Ray.

The caller's decision wins (a `traceparent` flag, or X-Ray's `Sampled=1`/`0`); without one the
local sampler of OTEL_TRACES_SAMPLER decides (default: record all), so `traceidratio` and
`parentbased_traceidratio` sample alike here. Spans inside a request follow the request's decision.
"""

from __future__ import annotations

import logging

from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import get_current_span

from .propagation import caller_decision

log = logging.getLogger(__name__)

# OTEL_TRACES_SAMPLER's local samplers; a `parentbased_` name means the same here (see above).
LOCAL_SAMPLERS = {"always_on": ALWAYS_ON, "always_off": ALWAYS_OFF}
DEFAULT_SAMPLER = "parentbased_always_on"


class CallerDecisionSampler(Sampler):
    """Follows the caller's decision when there is one, else asks `local`."""

    def __init__(self, local: Sampler):
        self.local = local

    def should_sample(
        self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if parent.is_valid and not parent.is_remote:
            decided = parent.trace_flags.sampled
        else:
            decided = caller_decision(parent_context, parent)
        sampler = self.local if decided is None else ALWAYS_ON if decided else ALWAYS_OFF
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links)

    def get_description(self) -> str:
        return f"CallerDecision{{local:{self.local.get_description()}}}"


def local_sampler(name: str, argument: str) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG name (unknown: record all, with a warning)."""
    local = (name or DEFAULT_SAMPLER).removeprefix("parentbased_")
    if local in LOCAL_SAMPLERS:
        return LOCAL_SAMPLERS[local]
    if local != "traceidratio":
        log.warning("OTEL_TRACES_SAMPLER=%.40s is not one this app knows; recording every request", name)
        return ALWAYS_ON
    try:
        rate = float(argument) if argument else 1.0
        if not 0.0 <= rate <= 1.0:
            raise ValueError(rate)
    except ValueError:
        log.warning("OTEL_TRACES_SAMPLER_ARG=%.40s is not a ratio from 0 to 1; using 1.0", argument)
        rate = 1.0
    return TraceIdRatioBased(rate)


def build_sampler(name: str, argument: str) -> CallerDecisionSampler:
    return CallerDecisionSampler(local_sampler(name.strip().lower(), argument.strip()))
