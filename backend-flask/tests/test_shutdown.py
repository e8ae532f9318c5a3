"""The shutdown flushes: priority order, one budget, a fair share each, never raising."""

from __future__ import annotations

import time

from cruddur.telemetry.shutdown import Flushes


def test_each_flush_gets_a_fair_share_of_what_is_left():
    flushes = Flushes(budget=1.2)
    given = {}

    def hog(name):
        def flush(seconds):
            given[name] = seconds
            time.sleep(seconds)  # a dead vendor: uses all it is given

        return flush

    flushes.add(10, "spans", hog("spans"))
    flushes.add(20, "errors", lambda seconds: given.setdefault("errors", seconds))  # done at once
    flushes.add(90, "logs", hog("logs"))
    started = time.monotonic()
    flushes.run()
    assert time.monotonic() - started < 1.5
    assert abs(given["spans"] - 0.4) < 0.05  # a third of the budget, not all of it
    assert given["logs"] > 0.7  # the logs, last, get what the others left


def test_a_failing_flush_does_not_stop_the_others_and_run_is_once():
    flushes = Flushes(budget=1)
    ran = []

    def broken(_seconds):
        raise RuntimeError("vendor SDK bug")

    flushes.add(10, "broken", broken)
    flushes.add(20, "logs", lambda _s: ran.append("logs"))
    flushes.run()
    flushes.run()
    assert ran == ["logs"]
