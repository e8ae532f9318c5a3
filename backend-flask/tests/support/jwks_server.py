"""A Cognito JWKS endpoint on loopback whose keys a test controls, and tokens signed with them.

Cognito publishes a pool's public keys at `<endpoint>/<user pool id>/.well-known/jwks.json` as a
JSON Web Key Set: RSA keys with `kid`, `alg` RS256, `kty` RSA, `use` sig, `n` and `e` (AWS
Cognito developer guide, "Verifying a JSON Web Token"). This server answers that path only (404
elsewhere, as Cognito does for a pool that does not exist), so a verifier that asks for the wrong
pool fails here too. Fault modes (refuse, blackhole, slow, status500) come from FaultyHTTPServer;
``html`` answers 200 with an HTML page, as a captive portal or a misrouted proxy would.

``SigningKey`` is an RSA key pair of our own; ``SigningKey.token(claims)`` signs a token with it,
and ``access_claims(...)`` builds the claims of a Cognito access token.
"""

import base64
import json
import threading
import time
import uuid

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.faulty_http import FaultyHTTPServer, Response

REGION = "us-east-1"


class SigningKey:
    """An RSA key pair with a `kid`."""

    def __init__(self, kid=None):
        self.kid = kid or uuid.uuid4().hex
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self):
        """The public key as Cognito publishes it."""
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def token(self, claims, kid=None, algorithm="RS256"):
        """A token signed with this key (header `kid` this key's unless given)."""
        return jwt.encode(claims, self.private, algorithm=algorithm, headers={"kid": kid or self.kid})


def access_claims(pool_id, app_client_id, username="bayko", region=REGION, **changes):
    """The claims of a Cognito access token (as Cognito issues them), with `changes` applied (a
    change to None removes the claim)."""
    now = int(time.time())
    claims = {
        "sub": str(uuid.uuid4()),
        "iss": f"https://cognito-idp.{region}.amazonaws.com/{pool_id}",
        "client_id": app_client_id,
        "origin_jti": str(uuid.uuid4()),
        "event_id": str(uuid.uuid4()),
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
        "jti": str(uuid.uuid4()),
        "username": username,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def b64url(data):
    """Base64url without padding, as in a JWT."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JWKSServer(FaultyHTTPServer):
    """Serves `keys` as the JWKS of `pool_id`; counts the fetches."""

    name = "jwks"

    def __init__(self, pool_id, keys=(), **kwargs):
        super().__init__(**kwargs)
        self.pool_id = pool_id
        self.keys = list(keys)
        self.html = False
        self._fetches = 0
        self._fetch_lock = threading.Lock()

    @property
    def endpoint(self):
        """What AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER would be."""
        return self.url

    @property
    def fetches(self):
        """How many times the key set was served."""
        with self._fetch_lock:
            return self._fetches

    def handle(self, request):
        """The pool's key set; 404 for any other path."""
        if request.method != "GET" or request.path != f"/{self.pool_id}/.well-known/jwks.json":
            return Response.json(404, {"message": "User pool does not exist."})
        with self._fetch_lock:
            self._fetches += 1
        if self.html:
            return Response(200, b"<html><body>Sign in to the Wi-Fi</body></html>", "text/html")
        return Response.json(200, {"keys": [key.jwk() for key in self.keys]})
