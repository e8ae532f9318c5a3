"""OTLP trace export without the per-span protobuf objects: the same bytes, written directly.

Measured (docs/performance.md): the SDK's `encode_spans` builds a protobuf object per span, per
attribute and per value, about twice the CPU of writing the wire format directly, all of it on the
batch processor's thread holding the worker's GIL. `encode_request` writes the same
`ExportTraceServiceRequest` bytes (a property-based test compares them byte for byte with the SDK's
`encode_spans(...).SerializePartialToString()`); a value it does not know how to write makes the
batch go through the SDK's encoder instead.

`WireOTLPSpanExporter` is the SDK's OTLPSpanExporter. Its `export` is the SDK's own `export`
function, run with its module's globals except `encode_spans` (see `_sdk_export_with`): transport,
retries, size limit, metrics and logging stay the SDK's. That is the one library internal here,
guarded: on an SDK version it was not verified against, or if the SDK's export no longer calls
`encode_spans`, the exporter is the plain SDK exporter.
"""

from __future__ import annotations

import logging
import struct
import types
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import SpanKind

log = logging.getLogger(__name__)

_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
_FLAGS_HAS_IS_REMOTE = 0x100
_FLAGS_IS_REMOTE = 0x200
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack


class Unsupported(Exception):
    """A value this encoder does not write; the SDK's encoder takes the batch."""


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


# Field tags: (number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).
def _tag(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


T1_LEN, T2_LEN, T3_LEN, T4_LEN, T5_LEN = (_tag(n, 2) for n in (1, 2, 3, 4, 5))
T6_LEN, T7_LEN, T9_LEN, T11_LEN, T13_LEN, T15_LEN = (_tag(n, 2) for n in (6, 7, 9, 11, 13, 15))
T2_VARINT, T3_VARINT, T4_VARINT, T5_VARINT = (_tag(n, 0) for n in (2, 3, 4, 5))
T6_VARINT, T10_VARINT, T12_VARINT, T14_VARINT = (_tag(n, 0) for n in (6, 10, 12, 14))
T1_FIXED64, T7_FIXED64, T8_FIXED64 = (_tag(n, 1) for n in (1, 7, 8))
T4_FIXED64 = _tag(4, 1)
T6_FIXED32, T16_FIXED32 = _tag(6, 5), _tag(16, 5)


def _any_value(value) -> bytes:
    """AnyValue: a oneof, so even a default value (False, 0, "") is written."""
    if isinstance(value, bool):
        return T2_VARINT + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _len_field(T1_LEN, value.encode("utf-8"))
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 63):
            raise Unsupported("int out of int64 range")
        return T3_VARINT + _varint(value & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        return T4_FIXED64 + _pack_double(value)
    if isinstance(value, bytes):
        return _len_field(T7_LEN, value)
    if value is None:
        return b""
    if isinstance(value, Sequence):
        return _len_field(T5_LEN, b"".join(_len_field(T1_LEN, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _len_field(T6_LEN, b"".join(_len_field(T1_LEN, _key_value(str(k), v)) for k, v in value.items()))
    raise Unsupported(f"attribute type {type(value).__name__}")


def _key_value(key: str, value) -> bytes:
    return _len_field(T1_LEN, key.encode("utf-8")) + _len_field(T2_LEN, _any_value(value))


def _attributes(tag: bytes, attributes) -> bytes:
    if not attributes:
        return b""
    return b"".join(_len_field(tag, _key_value(key, value)) for key, value in attributes.items())


def _uint(tag: bytes, value: int | None) -> bytes:
    return tag + _varint(value) if value else b""


def _string(tag: bytes, value: str | None) -> bytes:
    return _len_field(tag, value.encode("utf-8")) if value else b""


def _span_flags(context) -> bytes:
    flags = _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if context is not None and context.is_remote else 0)
    return _pack_fixed32(flags)


def _span(span) -> bytes:
    context = span.get_span_context()
    parent = span.parent
    parts = [
        _len_field(T1_LEN, context.trace_id.to_bytes(16, "big")),
        _len_field(T2_LEN, context.span_id.to_bytes(8, "big")),
    ]
    if context.trace_state:
        parts.append(_string(T3_LEN, ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    if parent:
        parts.append(_len_field(T4_LEN, parent.span_id.to_bytes(8, "big")))
    parts.append(_string(T5_LEN, span.name))
    parts.append(T6_VARINT + _varint(_KIND[span.kind]))
    if span.start_time:
        parts.append(T7_FIXED64 + _pack_fixed64(span.start_time))
    if span.end_time:
        parts.append(T8_FIXED64 + _pack_fixed64(span.end_time))
    parts.append(_attributes(T9_LEN, span.attributes))
    parts.append(_uint(T10_VARINT, span.dropped_attributes))
    for event in span.events or ():
        body = (
            (T1_FIXED64 + _pack_fixed64(event.timestamp) if event.timestamp else b"")
            + _string(T2_LEN, event.name)
            + _attributes(T3_LEN, event.attributes)
            + _uint(T4_VARINT, event.dropped_attributes)
        )
        parts.append(_len_field(T11_LEN, body))
    parts.append(_uint(T12_VARINT, span.dropped_events))
    for link in span.links or ():
        body = (
            _len_field(T1_LEN, link.context.trace_id.to_bytes(16, "big"))
            + _len_field(T2_LEN, link.context.span_id.to_bytes(8, "big"))
            + _attributes(T4_LEN, link.attributes)
            + _uint(T5_VARINT, link.dropped_attributes)
            + T6_FIXED32
            + _span_flags(link.context)
        )
        parts.append(_len_field(T13_LEN, body))
    parts.append(_uint(T14_VARINT, span.dropped_links))
    status = span.status
    if status is not None:
        parts.append(
            _len_field(T15_LEN, _string(T2_LEN, status.description) + _uint(T3_VARINT, status.status_code.value))
        )
    parts.append(T16_FIXED32 + _span_flags(parent))
    return b"".join(parts)


def _scope(scope) -> bytes:
    if scope is None:
        return b""
    return _string(T1_LEN, scope.name) + _string(T2_LEN, scope.version) + _attributes(T3_LEN, scope.attributes)


def encode_request(spans) -> bytes:
    """An ExportTraceServiceRequest for `spans`, grouped by resource and scope as the SDK does.

    The SDK groups with the Resource and InstrumentationScope objects as dict keys, so equal
    resources (and scopes) share one group, in order of first appearance; so does this.
    """
    groups: dict = {}
    # Resource.__hash__ dumps its attributes as JSON: look each resource object up once.
    by_object: dict[int, dict] = {}
    for span in spans:
        resource = span.resource
        scopes = by_object.get(id(resource))
        if scopes is None:
            scopes = by_object[id(resource)] = groups.setdefault(resource, {})
        scopes.setdefault(span.instrumentation_scope or None, []).append(_len_field(T2_LEN, _span(span)))
    out = []
    for resource, scopes in groups.items():
        scope_spans = b"".join(
            _len_field(
                T2_LEN,
                _len_field(T1_LEN, _scope(scope))
                + b"".join(encoded)
                + _string(T3_LEN, scope.schema_url if scope else None),
            )
            for scope, encoded in scopes.items()
        )
        body = (
            _len_field(T1_LEN, _attributes(T1_LEN, resource.attributes))
            + scope_spans
            + _string(T3_LEN, resource.schema_url)
        )
        out.append(_len_field(T1_LEN, body))
    return b"".join(out)


# opentelemetry-exporter-otlp-proto-http versions whose `export` was read and tested with this encoder.
VERIFIED_EXPORTER_VERSIONS = ("1.45.",)


class _Encoded:
    """What the SDK's export expects from `encode_spans`: a message it serialises."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    def SerializePartialToString(self) -> bytes:  # the protobuf method's name
        """The request's bytes."""
        return self.data


def encode_spans_directly(spans):
    """`encode_spans`, written directly; the SDK's encoder for a batch this module does not write."""
    try:
        return _Encoded(encode_request(spans))
    except (Unsupported, UnicodeEncodeError) as why:
        log.debug("direct OTLP encoding declined (%s); using the SDK encoder", why)
        return encode_spans(spans)


def _exporter_version() -> str:
    try:
        return version("opentelemetry-exporter-otlp-proto-http")
    except PackageNotFoundError:
        return ""


def _sdk_export_with(encoder):
    """The SDK's OTLPSpanExporter.export, calling `encoder` where it calls `encode_spans`; None if unverified."""
    sdk_export = OTLPSpanExporter.export
    code = getattr(sdk_export, "__code__", None)
    if (
        not _exporter_version().startswith(VERIFIED_EXPORTER_VERSIONS)
        or code is None
        or "encode_spans" not in code.co_names
        or getattr(trace_exporter, "encode_spans", None) is not encode_spans
    ):
        return None
    namespace = {**sdk_export.__globals__, "encode_spans": encoder}
    export = types.FunctionType(code, namespace, sdk_export.__name__, sdk_export.__defaults__, sdk_export.__closure__)
    export.__kwdefaults__ = sdk_export.__kwdefaults__
    return export


_DIRECT_EXPORT = _sdk_export_with(encode_spans_directly)


class WireOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, encoding with `encode_request` where verified (module docstring)."""

    direct = _DIRECT_EXPORT is not None

    def export(self, spans):
        """The SDK's export with the direct encoder, or the SDK's export as it is."""
        if _DIRECT_EXPORT is None:
            return super().export(spans)
        return _DIRECT_EXPORT(self, spans)
