"""Cognito access tokens, verified locally with PyJWT against the pool's published keys (JWKS).

Each check answers one way a token could lie (journal/week3.md says why each matters):
RS256 only (no `none`, no HMAC with the public key as secret), a `kid` the pool publishes and its
signature, `iss` of this pool, `token_use` `access` (not an ID token), `client_id` of this app
client, `exp` with a few seconds of leeway for clock skew.

The keys come from `PyJWKClient`, which fetches and caches the key set. Around it: an unknown
`kid` refetches the set once (at most once per cooldown), a fetch is bounded by a timeout, a failed
fetch makes the next few seconds fail fast instead of every request waiting for the timeout, and
a key that verified before keeps verifying while the JWKS cannot be reached (Cognito rotates keys
rarely and announces new ones before it signs with them).
"""

from __future__ import annotations

import threading
import time

import jwt
from jwt import PyJWK, PyJWKClient

ALGORITHM = "RS256"
LEEWAY_SECONDS = 5
# A Cognito access token is about a kilobyte; anything far longer is not one (and not worth parsing).
MAX_TOKEN_CHARS = 8192
# After a failed fetch, requests that need a key not at hand get 503 at once for this long.
FAILED_FETCH_BACKOFF_SECONDS = 5.0
REQUIRED_CLAIMS = ["exp", "iss", "sub", "token_use", "client_id", "username"]


class BadToken(Exception):
    """The token is not a valid access token of this pool and client (`reason` is for debug logs;
    it never holds any part of the token)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class KeysUnavailable(Exception):
    """The signing keys cannot be fetched and the token's key is not at hand."""


class TokenVerifier:
    """Verifies access tokens of one user pool and app client."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        jwks_url: str,
        timeout: float,
        lifespan: float,
        refetch_cooldown: float,
        leeway: float = LEEWAY_SECONDS,
    ):
        self.issuer = issuer
        self.client_id = client_id
        self.leeway = leeway
        self.refetch_cooldown = refetch_cooldown
        self._client = PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=lifespan, timeout=timeout)
        self._lock = threading.Lock()
        self._known: dict[str, PyJWK] = {}  # the keys of the last set fetched, by kid
        self._fetched_at: float | None = None  # last successful fetch (monotonic)
        self._failing_until = 0.0

    def verify(self, token: str) -> dict:
        """The token's claims, or BadToken / KeysUnavailable."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise BadToken("length")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise BadToken("malformed") from None
        if header.get("alg") != ALGORITHM:
            raise BadToken("algorithm")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise BadToken("kid")
        key = self.signing_key(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidTokenError as error:
            raise BadToken(type(error).__name__) from None
        if claims.get("token_use") != "access":
            raise BadToken("token_use")
        if claims.get("client_id") != self.client_id:
            raise BadToken("client_id")
        if not isinstance(claims.get("username"), str) or not claims["username"].strip():
            raise BadToken("username")
        if not isinstance(claims.get("sub"), str):
            raise BadToken("sub")
        return claims

    def signing_key(self, kid: str) -> PyJWK:
        """The pool's key `kid`: from the cached set, else from one refetch; BadToken when the pool
        does not publish it, KeysUnavailable when the keys cannot be fetched."""
        with self._lock:  # one fetch at a time; the others then find its keys or its failure
            now = time.monotonic()
            try:
                found = self._find(kid, refresh=False, now=now)
                if found is None and self._may_refetch(now):
                    found = self._find(kid, refresh=True, now=now)
            except KeysUnavailable:
                if kid in self._known:
                    return self._known[kid]
                raise
            if found is None:
                raise BadToken("unknown kid")
            return found

    def _may_refetch(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= self.refetch_cooldown

    def _find(self, kid: str, refresh: bool, now: float) -> PyJWK | None:
        if now < self._failing_until:
            raise KeysUnavailable()
        try:
            # A fetch only when the cached set expired (or refresh): then note it.
            cached = self._client.jwk_set_cache is not None and self._client.jwk_set_cache.get() is not None
            keys = self._client.get_signing_keys(refresh=refresh)
        except (jwt.PyJWKClientError, jwt.PyJWKSetError, ValueError, OSError):
            # Unreachable, an HTTP error, or not a key set (an HTML error page): the same to a caller.
            self._failing_until = time.monotonic() + FAILED_FETCH_BACKOFF_SECONDS
            raise KeysUnavailable() from None
        if refresh or not cached:
            self._fetched_at = now
            self._known = {key.key_id: key for key in keys}
        return PyJWKClient.match_kid(keys, kid)
