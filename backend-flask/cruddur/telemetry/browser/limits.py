"""The relay's per-client limits: token buckets keyed by client (cruddur.clients.client_key), in a table
bounded by least-recent use. A request costs tokens: one in a table of requests, its body's length in a
table of bytes, so a client sending a few huge exports is limited like one sending many small ones.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class ClientBuckets:
    """`rate` tokens a second per client, up to `burst`; at most `max_clients` buckets.

    When the table is full, the client seen least recently is forgotten: it starts again with the full
    bucket it would have had anyway. A flood of new addresses pushes out idle clients, never busy ones.
    """

    def __init__(self, rate: float, burst: float, max_clients: int = 10_000):
        self.rate, self.burst, self.max_clients = rate, burst, max_clients
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, client: str) -> bool:
        return client in self._buckets

    def take(self, client: str, cost: float = 1) -> float:
        """0 if the client may go ahead now (`cost` tokens taken), else the seconds until it may.

        A cost over the burst costs the whole burst, so no request waits for ever.
        """
        cost = min(cost, self.burst)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = max(cost - tokens, 0) / self.rate
            self._buckets[client] = (tokens if wait else tokens - cost, now)  # now the most recent
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait
