"""The one list of library internals the product reads (private attributes), each with its reason.

At most three in the whole product; each has a test in tests/test_internals.py that fails when the
library changes it. OpenTelemetry reads none: counting, queue bounds and shutdown go through our own
SpanProcessor and SpanExporter wrappers and the SDK's public force_flush and shutdown.
"""

from __future__ import annotations

# "library.Class.attribute": why no public API serves
INTERNALS: dict[str, str] = {}
