"""Polling helpers, so tests wait for a condition instead of sleeping a guessed time."""

import time


def wait_for(predicate, timeout=10.0, interval=0.05, message=None):
    """Call predicate until it returns something truthy and return that; raise AssertionError at timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(message or f"condition not met within {timeout:g} s: {predicate!r} -> {result!r}")
        time.sleep(interval)
