"""A small closed-loop load generator: N threads, each with one keep-alive http.client connection.

    result = run_load("http://127.0.0.1:4567", concurrency=4, duration=5.0)
    result.count, result.errors, result.percentile(99)

Each thread sends the next request of a fixed mix either on a fixed timetable (``rate``: steady
load, latency counted from the scheduled send time) or as soon as its previous answer is read
(saturation). The run is bounded by time (``duration``) and by count (``max_requests``), whichever
comes first.

The latency of a request is measured from just before the request line is written to just after
the whole body is read; a reconnect that ``http.client`` makes because the server closed the
previous connection (gunicorn's sync workers answer ``Connection: close``) is part of it.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Call:
    """One request of the mix."""

    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


def post_activity(message: str = "load test crud") -> Call:
    """POST /api/activities with a short crud that expires in an hour."""
    body = json.dumps({"message": message, "ttl": "1-hour"}).encode()
    return Call("post_activity", "POST", "/api/activities", body, (("Content-Type", "application/json"),))


HOME = Call("home", "GET", "/api/activities/home")
ROLLBAR_TEST = Call("rollbar_test", "GET", "/rollbar/test")

# Per 10 requests: 6 reads of the home feed, 3 new cruds, 1 Rollbar warning item. Every one
# writes an access-log line and spans; the Rollbar call gives the Rollbar sender work too.
POST = post_activity()
DEFAULT_MIX: tuple[Call, ...] = (HOME, POST, HOME, HOME, POST, ROLLBAR_TEST, HOME, HOME, POST, HOME)


@dataclass
class Sample:
    """One answered (or failed) request."""

    call: str
    started: float  # time.monotonic() at send
    latency_ms: float
    status: int | None  # None: no HTTP answer (connection error, timeout)
    error: str | None = None
    traceresponse: str | None = None


@dataclass
class LoadResult:
    """Everything one run measured."""

    samples: list[Sample] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    reconnects: int = 0  # stale keep-alive connections re-opened before any byte of an answer

    @property
    def count(self) -> int:
        """Requests sent."""
        return len(self.samples)

    @property
    def duration(self) -> float:
        """Wall-clock seconds of the run."""
        return max(self.finished - self.started, 0.0)

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.count / self.duration if self.duration else 0.0

    def failures(self) -> list[Sample]:
        """Requests without a 2xx answer."""
        return [s for s in self.samples if s.status is None or not 200 <= s.status < 300]

    @property
    def errors(self) -> int:
        """How many requests were not answered 2xx."""
        return len(self.failures())

    def statuses(self) -> Counter:
        """Answers by status (``None`` for no answer)."""
        return Counter(s.status for s in self.samples)

    def latencies(self) -> list[float]:
        """Latencies in milliseconds, sorted."""
        return sorted(s.latency_ms for s in self.samples)

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the latency in ms (0 for an empty run)."""
        values = self.latencies()
        if not values:
            return 0.0
        rank = max(math.ceil(p / 100 * len(values)), 1)
        return values[rank - 1]

    def window_percentiles(self, p: float, seconds: float = 1.0) -> list[float]:
        """Nearest-rank percentile ``p`` of the latency in each ``seconds``-long window of sends, in order."""
        windows: dict[int, list[float]] = {}
        for sample in self.samples:
            windows.setdefault(int((sample.started - self.started) // seconds), []).append(sample.latency_ms)
        result = []
        for index in sorted(windows):
            values = sorted(windows[index])
            result.append(values[max(math.ceil(p / 100 * len(values)), 1) - 1])
        return result

    def slowest(self, n: int = 10) -> list[Sample]:
        """The n slowest requests, slowest first."""
        return sorted(self.samples, key=lambda s: s.latency_ms, reverse=True)[:n]

    def summary(self) -> str:
        """One line for logs and assertion messages."""
        return (
            f"{self.count} requests in {self.duration:.1f} s ({self.rate:.0f}/s), {self.errors} not 2xx, "
            f"p50 {self.percentile(50):.1f} ms, p99 {self.percentile(99):.1f} ms, max {self.percentile(100):.1f} ms, "
            f"statuses {dict(self.statuses())}, reconnects {self.reconnects}"
        )

    def merge(self, other: LoadResult) -> LoadResult:
        """Both runs as one (for several phases of a soak)."""
        return LoadResult(
            samples=self.samples + other.samples,
            started=min(self.started or other.started, other.started or self.started),
            finished=max(self.finished, other.finished),
            reconnects=self.reconnects + other.reconnects,
        )


class _Client:
    """One keep-alive connection; re-opens it when the server closed it."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.used = False  # whether the connection already carried a request

    def reset(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.used = False

    def send(self, call: Call) -> tuple[int, dict]:
        """Send and read the whole answer; a stale reused connection is re-opened once."""
        for attempt in (1, 2):
            reused = self.used and self.conn.sock is not None
            try:
                self.conn.request(call.method, call.path, body=call.body, headers=dict(call.headers))
                response = self.conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection before our request reached it:
                # what every HTTP client library retries. Anything else is an error of the run.
                self.reset()
                if reused and attempt == 1:
                    raise _Reconnected from None
                raise
            self.used = True
            if response.will_close:
                self.conn.close()
                self.used = False
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        raise AssertionError("unreachable")


class _Reconnected(Exception):
    pass


def run_load(
    base_url: str,
    concurrency: int = 4,
    duration: float | None = 5.0,
    max_requests: int | None = None,
    mix: tuple[Call, ...] = DEFAULT_MIX,
    timeout: float = 10.0,
    rate: float | None = None,
    progress: Callable[[LoadResult], None] | None = None,
    progress_every: float = 10.0,
) -> LoadResult:
    """Drive ``base_url`` with ``concurrency`` clients; stop at ``duration`` s or ``max_requests``.

    With ``rate`` (requests per second, all clients together) each client sends on a fixed
    timetable, and a request's latency counts from its scheduled time: a slow answer that delays
    the next request is charged to that request too (no coordinated omission). Without ``rate``
    each client sends as soon as its previous answer is read (saturation).
    """
    if duration is None and max_requests is None:
        raise ValueError("give a duration, a request count or both")
    interval = concurrency / rate if rate else 0.0
    parts = urlsplit(base_url)
    host, port = parts.hostname, parts.port or 80
    result = LoadResult()
    lock = threading.Lock()
    tickets = itertools.count()  # the shared position in the mix, and the request budget
    result.started = time.monotonic()
    deadline = result.started + duration if duration is not None else math.inf

    def worker(index: int) -> None:
        client = _Client(host, port, timeout)
        scheduled = result.started + index * interval / concurrency
        try:
            while time.monotonic() < deadline:
                if interval:
                    pause = scheduled - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                ticket = next(tickets)
                if max_requests is not None and ticket >= max_requests:
                    return
                call = mix[ticket % len(mix)]
                sample = _one(client, call, result, lock, scheduled if interval else None)
                scheduled += interval
                with lock:
                    result.samples.append(sample)
        finally:
            client.conn.close()

    threads = [threading.Thread(target=worker, args=(i,), name=f"load-{i}", daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    next_progress = time.monotonic() + progress_every
    while any(thread.is_alive() for thread in threads):
        for thread in threads:
            thread.join(timeout=0.2)
        if progress is not None and time.monotonic() >= next_progress:
            next_progress += progress_every
            with lock:
                snapshot = LoadResult(list(result.samples), result.started, time.monotonic(), result.reconnects)
            progress(snapshot)
    result.finished = time.monotonic()
    return result


def _one(client: _Client, call: Call, result: LoadResult, lock: threading.Lock, scheduled: float | None) -> Sample:
    started = time.monotonic() if scheduled is None else min(scheduled, time.monotonic())
    try:
        try:
            status, headers = client.send(call)
        except _Reconnected:
            with lock:
                result.reconnects += 1
            status, headers = client.send(call)
    except (OSError, http.client.HTTPException) as error:
        client.reset()
        latency = (time.monotonic() - started) * 1000
        return Sample(call.name, started, latency, None, f"{type(error).__name__}: {error}")
    latency = (time.monotonic() - started) * 1000
    return Sample(call.name, started, latency, status, None, headers.get("traceresponse"))


def get_json(base_url: str, path: str, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """One GET on a fresh connection: (status, lower-cased headers, body)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()
