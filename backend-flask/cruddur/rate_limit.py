"""Per-client rate limits: a token bucket per client address, in a table bounded by least-recent use."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict


def client_key(address: str | None) -> str:
    """The bucket of a client address: an IPv4 address alone, an IPv6 address by its /64.

    One IPv6 subscriber is usually given a whole /64, so counting single addresses would give one
    client 2**64 buckets. The address is the one ProxyFix settled on (CRUDDUR_TRUSTED_PROXIES).
    """
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"  # e.g. a unix socket peer: one bucket for all of them
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ClientBuckets:
    """`rate` requests a second per client, in bursts of `burst`; at most `max_clients` buckets.

    When the table is full, the client seen least recently is forgotten: it starts again with a
    full bucket, which is what a client idle that long would have had anyway. A flood of new
    addresses pushes out idle clients one at a time and never resets the busy ones.
    """

    def __init__(self, rate: float = 5.0, burst: int = 20, max_clients: int = 10_000):
        self.rate = rate
        self.burst = burst
        self.max_clients = max_clients
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)

    def __len__(self) -> int:
        return len(self._buckets)

    def __contains__(self, client: str) -> bool:
        return client in self._buckets

    def take(self, client: str) -> float:
        """0 if the client may go ahead now (one token taken), else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1 if not wait else tokens, now)  # now the most recent
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
            return wait
