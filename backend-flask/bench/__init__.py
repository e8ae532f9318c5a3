"""The telemetry overhead benchmark: `python -m bench` (see __main__ and docs/performance.md)."""
