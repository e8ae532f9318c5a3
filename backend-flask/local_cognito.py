"""A local Cognito user pool for development and tests, with no AWS account: moto's server (cognito-idp).

`bin/local-cognito` (this module) starts moto on loopback, or uses one already running
(`--endpoint`), and creates a user pool, an app client for USER_PASSWORD_AUTH and refresh, and the
seed users with one development password. It prints one JSON line on stdout when ready: the
variables the backend (`AWS_COGNITO_*`, `AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER`) and the
frontend (`VITE_*`) take, plus the seed users and their password; `--env-file` also writes them as
shell assignments. A moto it started serves until SIGINT or SIGTERM.

moto is a development dependency: the app never imports this module.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 9229  # cognito-local's port, so the frontend's default endpoint works for either
REGION = "us-east-1"
POOL_NAME = "cruddur-local"
CLIENT_NAME = "cruddur-web"
# A development password for every seed user: it meets Cognito's default password policy
# (8+ characters, upper and lower case, a digit, a symbol).
SEED_PASSWORD = "Cruddur-dev-1"
# moto accepts any credentials; boto3 needs some to sign with.
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass(frozen=True)
class LocalPool:
    """Where the local pool is and how to sign in to it."""

    endpoint: str
    region: str
    pool_id: str
    client_id: str
    users: tuple[tuple[str, str], ...]
    password: str

    def env(self) -> dict[str, str]:
        """The backend's and the frontend's variables for this pool."""
        return {
            "AWS_COGNITO_USER_POOL_ID": self.pool_id,
            "AWS_COGNITO_USER_POOL_CLIENT_ID": self.client_id,
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "VITE_AWS_USER_POOLS_ID": self.pool_id,
            "VITE_CLIENT_ID": self.client_id,
            "VITE_AWS_COGNITO_ENDPOINT": self.endpoint,
        }

    def describe(self) -> dict:
        """Everything, as printed on stdout."""
        return {
            "env": self.env(),
            "endpoint": self.endpoint,
            "region": self.region,
            "user_pool_id": self.pool_id,
            "client_id": self.client_id,
            "users": [{"username": u, "name": n} for u, n in self.users],
            "password": self.password,
        }

    @property
    def jwks_url(self) -> str:
        """The pool's signing keys, where the backend fetches them."""
        return f"{self.endpoint}/{self.pool_id}/.well-known/jwks.json"


def cognito_client(endpoint: str, region: str = REGION):
    """A boto3 cognito-idp client for this endpoint."""
    import boto3

    return boto3.client("cognito-idp", endpoint_url=endpoint, region_name=region, **FAKE_CREDENTIALS)


def bootstrap(endpoint: str, region: str = REGION, password: str = SEED_PASSWORD) -> LocalPool:
    """Create (or find, on a moto that already has it) the pool, the app client and the seed users."""
    from cruddur.seed import USERS

    client = cognito_client(endpoint, region)
    pools = client.list_user_pools(MaxResults=60)["UserPools"]
    pool_id = next((p["Id"] for p in pools if p["Name"] == POOL_NAME), None)
    if pool_id is None:
        pool_id = client.create_user_pool(
            PoolName=POOL_NAME,
            AutoVerifiedAttributes=["email"],
            Schema=[{"Name": "email", "AttributeDataType": "String", "Required": False, "Mutable": True}],
        )["UserPool"]["Id"]
    clients = client.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)["UserPoolClients"]
    client_id = next((c["ClientId"] for c in clients if c["ClientName"] == CLIENT_NAME), None)
    if client_id is None:
        client_id = client.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=CLIENT_NAME,
            GenerateSecret=False,  # a browser app cannot keep a secret
            ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            # What ID tokens carry, as a Cognito app client's defaults do (the app shows the name).
            ReadAttributes=["email", "email_verified", "name"],
        )["UserPoolClient"]["ClientId"]
    for username, name in USERS:
        try:
            client.admin_get_user(UserPoolId=pool_id, Username=username)
            continue
        except client.exceptions.UserNotFoundException:
            pass
        client.admin_create_user(
            UserPoolId=pool_id,
            Username=username,
            UserAttributes=[
                {"Name": "name", "Value": name},
                {"Name": "email", "Value": f"{username}@cruddur.invalid"},
                {"Name": "email_verified", "Value": "true"},
            ],
            MessageAction="SUPPRESS",
        )
        # Permanent: the user is CONFIRMED and signs in without a new-password challenge.
        client.admin_set_user_password(UserPoolId=pool_id, Username=username, Password=password, Permanent=True)
    return LocalPool(endpoint.rstrip("/"), region, pool_id, client_id, tuple(USERS), password)


class MotoCognito:
    """moto's threaded server on loopback (every AWS service; this module uses cognito-idp)."""

    def __init__(self, host: str = LOOPBACK, port: int = 0):
        """`port` 0 picks a free one."""
        self.host = host
        self.port = port
        self._server = None

    def start(self) -> MotoCognito:
        """Start serving; return self."""
        from moto.server import ThreadedMotoServer  # loads every moto backend: a second or two

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one INFO line per request otherwise
        self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
        self._server.start()
        self.port = self._server.get_host_and_port()[1]
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def endpoint(self) -> str:
        """moto's base URL."""
        return f"http://{self.host}:{self.port}"


def _write_env_file(path: Path, env: dict[str, str]) -> None:
    """Shell assignments, written whole (a reader never sees half a file)."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    """Start (or use) a local pool, print it as one JSON line, and serve until SIGINT or SIGTERM."""
    parser = argparse.ArgumentParser(prog="bin/local-cognito", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=LOOPBACK, help="address moto listens on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="moto's port; 0 picks one (default %(default)s)")
    parser.add_argument("--endpoint", help="use the moto already serving here; create the pool and exit")
    parser.add_argument("--region", default=REGION, help="the pool's region (default %(default)s)")
    parser.add_argument("--env-file", type=Path, help="also write the variables here as `export K=V` lines")
    args = parser.parse_args(argv)

    moto = None
    if args.endpoint:
        endpoint = args.endpoint
    else:
        moto = MotoCognito(args.host, args.port).start()
        endpoint = moto.endpoint
    pool = bootstrap(endpoint, args.region)
    if args.env_file:
        _write_env_file(args.env_file, pool.env())
    print(json.dumps(pool.describe()), flush=True)
    users = ", ".join(u for u, _ in pool.users)
    print(f"local Cognito at {endpoint}: sign in as {users} with password {pool.password}", file=sys.stderr)
    if moto is None:
        return 0
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    moto.stop()
    if args.env_file:
        args.env_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
