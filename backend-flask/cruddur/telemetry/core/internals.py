"""Library internals (private attributes) the product reads, each with why no public API serves.

None today: tests/test_public_api.py fails on a private read not listed here, and on more than three.
"""

INTERNALS: dict[str, str] = {}  # "library.Class.attribute": why
