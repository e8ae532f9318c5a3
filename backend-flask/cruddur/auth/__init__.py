"""Sign-in: a Cognito access token names the acting user of a request.

- `init_app(app)`: a token verifier when AWS_COGNITO_USER_POOL_ID and _CLIENT_ID are set
  (auth/tokens.py), else sign-in is off: development and test act as CRUDDUR_USER_HANDLE,
  production answers 401 to everything that needs a user.
- `identify` (a blueprint's before_request): names the user of a request that carries a valid
  token; a public route ignores a missing or bad one.
- `require_sign_in` (before_request) and `@signed_in` (a view): 401/503 unless there is a user;
  `acting_user()` is that user.
- `user_identified`: sent once per request when its user is known, with `handle` and
  `cognito_user_id` (the token's `sub`; None while sign-in is off). The access log and the
  telemetry integrations connect to it; nothing else of the token ever leaves this package.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from blinker import Namespace
from flask import Flask, current_app, g, request

from ..config import Config
from ..errors import AuthUnavailable, InvalidToken, SignInRequired
from .tokens import BadToken, KeysUnavailable, TokenVerifier

log = logging.getLogger(__name__)
EXTENSION = "cruddur.auth"
_signals = Namespace()
user_identified = _signals.signal("user-identified")


@dataclass(frozen=True)
class ActingUser:
    """Who acts: a Cruddur handle and, when signed in, the Cognito user's `sub`."""

    handle: str
    cognito_user_id: str | None = None
    display_name: str | None = None  # for a user made on first use: the token's `name`, if it has one


def init_app(app: Flask) -> None:
    """Verify Cognito access tokens when the pool and the app client are configured."""
    config: Config = app.extensions["cruddur.config"]
    if not config.signin_on:
        app.extensions[EXTENSION] = None
        if config.env == "production":
            log.info("sign-in is off (AWS_COGNITO_USER_POOL_ID unset): what needs a user answers 401")
        else:
            log.info("sign-in is off (AWS_COGNITO_USER_POOL_ID unset): everyone acts as @%s", config.user_handle)
        return
    app.extensions[EXTENSION] = TokenVerifier(
        config.cognito_issuer,
        config.cognito_client_id,
        config.cognito_jwks_url,
        timeout=config.jwks_timeout,
        lifespan=config.jwks_lifespan,
        refetch_cooldown=config.jwks_refetch_cooldown,
    )
    log.info("sign-in: Cognito user pool %s, keys from %s", config.cognito_user_pool_id, config.cognito_jwks_url)


def _bearer_token() -> str | None:
    """The request's bearer token, "" for an Authorization header that carries none, None without one."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _verified() -> ActingUser:
    """The token's user (verified once per request), or the 401/503 to answer."""
    if "cruddur_auth" not in g:
        g.cruddur_auth = _verify()
        if isinstance(g.cruddur_auth, ActingUser):
            _identified(g.cruddur_auth)
    outcome = g.cruddur_auth
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def _verify() -> ActingUser | Exception:
    token = _bearer_token()
    if token is None:
        return SignInRequired()
    try:
        claims = current_app.extensions[EXTENSION].verify(token)
    except BadToken as bad:
        log.debug("token refused: %s", bad.reason)
        return InvalidToken()
    except KeysUnavailable:
        log.warning("sign-in: the pool's signing keys cannot be fetched")
        return AuthUnavailable()
    name = claims.get("name")
    return ActingUser(claims["username"], claims["sub"], name if isinstance(name, str) and name.strip() else None)


def _identified(user: ActingUser) -> None:
    if not g.get("cruddur_identified"):
        g.cruddur_identified = True
        app = current_app._get_current_object()  # the sender receivers subscribe to (Flask's own signals do this)
        user_identified.send(app, handle=user.handle, cognito_user_id=user.cognito_user_id)


def identify() -> None:
    """before_request of public routes: name the user when the request carries a valid token."""
    if current_app.extensions.get(EXTENSION) is None or request.method == "OPTIONS" or _bearer_token() is None:
        return
    with contextlib.suppress(SignInRequired, AuthUnavailable):  # a public route answers whoever asks
        _verified()


def require_sign_in() -> None:
    """before_request of routes that need a user: 401 or 503 unless there is one. A CORS preflight
    (OPTIONS) passes: browsers never send credentials with one, and it must succeed for the real
    request to be sent."""
    if request.method != "OPTIONS":
        acting_user()


def signed_in(view):
    """A view that needs a user (401 or 503 otherwise)."""

    @functools.wraps(view)
    def needs_user(*args, **kwargs):
        require_sign_in()
        return view(*args, **kwargs)

    return needs_user


def acting_user() -> ActingUser:
    """The request's acting user: the token's (made a Cruddur user on first use), or the configured
    one while sign-in is off outside production."""
    user = g.get("cruddur_user")
    if user is not None:
        return user
    config: Config = current_app.extensions["cruddur.config"]
    if current_app.extensions.get(EXTENSION) is None:
        if config.env == "production":
            raise SignInRequired()
        user = ActingUser(config.user_handle)
        _identified(user)
    else:
        user = _verified()
        from ..services import users
        from ..store import get_store

        users.sign_in(get_store(), user.handle, user.cognito_user_id, user.display_name, datetime.now(UTC))
    g.cruddur_user = user
    return user
