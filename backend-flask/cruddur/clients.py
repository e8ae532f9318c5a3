"""Who the client is: its address, by the CRUDDUR_TRUSTED_PROXIES rule.

With N trusted proxies, create_app wraps the app in werkzeug's ProxyFix(x_for=N), which makes the
N-th address from the right of X-Forwarded-For (the one the outermost trusted proxy appended) the
request's REMOTE_ADDR. With none, the peer is the client, and X-Forwarded-For is only the client's
own claim. Rate limits, the access log and the X-Ray segment's client_ip read the address here;
rate limits count a client by `client_key`.
"""

from __future__ import annotations

import ipaddress

from flask import has_request_context, request


def client_address(environ: dict | None = None) -> str | None:
    """The client's address for this request (or WSGI `environ`); None outside a request."""
    if environ is None:
        if not has_request_context():
            return None
        environ = request.environ
    return environ.get("REMOTE_ADDR")


def client_key(address: str | None) -> str:
    """Whom a per-client limit counts: an IPv4 address alone, an IPv6 address by its /64.

    One IPv6 subscriber is usually given a whole /64, so counting single addresses would give one
    client 2**64 buckets.
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
