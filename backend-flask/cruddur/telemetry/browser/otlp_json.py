"""OTLP/JSON into opentelemetry-proto messages, by the OTLP/JSON encoding rules.

OTLP/JSON is protobuf's JSON mapping with these differences (OpenTelemetry protocol
specification, "JSON Protobuf Encoding"): `traceId`, `spanId` and `parentSpanId` are hex strings,
not base64; enum values are integers only; receivers ignore fields they do not know. Keys are
lowerCamelCase; the snake_case field names are accepted too, as protobuf's mapping does.

protobuf's `json_format.ParseDict` implements the whole mapping generically, in pure Python, for
every field of every message. This reads each message type's descriptor once, checks every value
against its field's type, and hands the result to the protobuf runtime's own constructors (C, in
upb), which is what keeps checking a browser export cheap. A test holds the two to the same
result on valid input.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import NamedTuple

from google.protobuf.descriptor import Descriptor, FieldDescriptor

HEX_ID_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id"})
MAX_DEPTH = 64  # nested messages; OTLP's deepest legitimate nesting (a map in an array in a map) is far less
_INTEGER = re.compile(r"-?[0-9]+")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_INTEGER_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_STRING, _BOOL, _ENUM, _BYTES = (
    FieldDescriptor.TYPE_STRING,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_ENUM,
    FieldDescriptor.TYPE_BYTES,
)
_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class MalformedOTLP(ValueError):
    """The document is not OTLP/JSON for this message type."""

    code = "otlp_malformed"


class InvalidId(MalformedOTLP):
    """A trace or span id that is not a hex string."""

    code = "otlp_invalid_id"


class TooMany(MalformedOTLP):
    """More messages of one type than the caller allows (`message_type` says which)."""

    def __init__(self, message_type: str, limit: int):
        super().__init__(f"more than {limit} {message_type} messages")
        self.message_type = message_type


def parse(document, message_class, limits: dict[str, int] | None = None):
    """A `message_class` message from a parsed OTLP/JSON document (dict); raises MalformedOTLP.

    `limits` caps how many messages of a type (full name, e.g. `opentelemetry.proto.trace.v1.Span`)
    the document may hold, checked before any of them is converted.
    """
    counts = dict.fromkeys(limits or {}, 0)
    kwargs = _message(document, message_class.DESCRIPTOR, limits or {}, counts, 0)
    try:
        return message_class(**kwargs)
    except (TypeError, ValueError) as error:  # e.g. an integer out of its field's range, a lone surrogate
        raise MalformedOTLP(str(error)) from None


class _Field(NamedTuple):
    """What conversion needs of a field, read from its descriptor once (descriptor reads are slow)."""

    name: str
    json_name: str
    message: str  # the containing message's name, for errors
    type: int
    repeated: bool
    message_type: Descriptor | None
    oneof: str | None
    hex_id: bool


_PLANS: dict[Descriptor, dict[str, _Field]] = {}


def _plan(descriptor: Descriptor) -> dict[str, _Field]:
    plan = _PLANS.get(descriptor)
    if plan is None:
        plan = {}
        for field in descriptor.fields:
            oneof = field.containing_oneof
            entry = _Field(
                name=field.name,
                json_name=field.json_name,
                message=descriptor.name,
                type=field.type,
                repeated=field.is_repeated,
                message_type=field.message_type,
                oneof=oneof.name if oneof is not None else None,
                hex_id=field.type == FieldDescriptor.TYPE_BYTES and field.name in HEX_ID_FIELDS,
            )
            plan[field.json_name] = entry
            plan[field.name] = entry
        _PLANS[descriptor] = plan
    return plan


def _message(node, descriptor: Descriptor, limits, counts, depth: int) -> dict:
    if not isinstance(node, dict):
        raise MalformedOTLP(f"{descriptor.name} must be a JSON object")
    if depth > MAX_DEPTH:
        raise MalformedOTLP("nested too deeply")
    plan = _plan(descriptor)
    kwargs = {}
    oneofs = None
    for key, value in node.items():
        field = plan.get(key)
        if field is None or value is None:  # unknown fields are ignored; null is the default value
            continue
        if field.name in kwargs:
            raise MalformedOTLP(f"{descriptor.name}.{field.name} is given twice")
        if field.oneof is not None:
            if oneofs is None:
                oneofs = set()
            elif field.oneof in oneofs:
                raise MalformedOTLP(f"{descriptor.name} sets more than one of {field.oneof}")
            oneofs.add(field.oneof)
        if field.repeated:
            if not isinstance(value, list):
                raise MalformedOTLP(f"{descriptor.name}.{field.name} must be a list")
            kwargs[field.name] = _repeated(value, field, limits, counts, depth)
        elif field.message_type is not None:
            kwargs[field.name] = _message(value, field.message_type, limits, counts, depth + 1)
        else:
            kwargs[field.name] = _scalar(value, field)
    return kwargs


def _repeated(values: list, field: _Field, limits, counts, depth: int) -> list:
    message_type = field.message_type
    if message_type is None:
        return [_scalar(value, field) for value in values]
    if limits:
        name = message_type.full_name
        if name in limits:
            counts[name] += len(values)
            if counts[name] > limits[name]:
                raise TooMany(name, limits[name])
    return [_message(value, message_type, limits, counts, depth + 1) for value in values]


def _scalar(value, field: _Field):
    kind = field.type
    if kind == _STRING:
        if isinstance(value, str):
            return value
    elif kind == _BOOL:
        if isinstance(value, bool):
            return value
    elif kind == _ENUM:  # OTLP/JSON: integers only, never the value's name
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind in _INTEGER_TYPES:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            return int(value)
    elif kind in _FLOAT_TYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value in _SPECIAL_FLOATS:
            return _SPECIAL_FLOATS[value]
    elif field.hex_id:
        if isinstance(value, str) and _HEX.fullmatch(value):
            return bytes.fromhex(value)
        raise InvalidId(f"{field.json_name} must be a hex string (OTLP/JSON), not {value!r:.80}")
    elif kind == _BYTES and isinstance(value, str):
        return _base64(value, field)
    raise MalformedOTLP(f"{field.message}.{field.json_name} cannot be {value!r:.80}")


def _base64(value: str, field: _Field) -> bytes:
    """protobuf's JSON mapping: standard or URL-safe base64, padded or not."""
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedOTLP(f"{field.message}.{field.json_name} is not base64") from None
