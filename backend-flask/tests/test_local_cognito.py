"""bin/local-cognito, as `make run` and the browser e2e use it: one JSON line when ready, an env
file to source, the seed users signing in with the printed password, a clean stop on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import jwt

from cruddur.seed import USERS
from local_cognito import LocalPool
from tests.support.app_server import BACKEND_DIR
from tests.support.cognito import tokens

BIN = BACKEND_DIR.parent / "bin" / "local-cognito"


def test_the_bootstrap_serves_a_pool_the_seed_users_sign_in_to(tmp_path):
    env_file = tmp_path / "cognito.env"
    process = subprocess.Popen(
        [str(BIN), "--port", "0", "--env-file", str(env_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = json.loads(process.stdout.readline())
        env = ready["env"]
        assert set(env) == {
            "AWS_COGNITO_USER_POOL_ID",
            "AWS_COGNITO_USER_POOL_CLIENT_ID",
            "AWS_ENDPOINT_URL_COGNITO_IDENTITY_PROVIDER",
            "AWS_DEFAULT_REGION",
            "VITE_AWS_USER_POOLS_ID",
            "VITE_CLIENT_ID",
            "VITE_AWS_COGNITO_ENDPOINT",
        }
        assert [(u["username"], u["name"]) for u in ready["users"]] == list(USERS)
        sourced = subprocess.run(
            ["bash", "-c", f"source {env_file} && env"], capture_output=True, text=True, check=True
        ).stdout
        for name, value in env.items():
            assert f"{name}={value}\n" in sourced
        pool = LocalPool(
            ready["endpoint"], ready["region"], ready["user_pool_id"], ready["client_id"], (), ready["password"]
        )
        for username, _name in USERS:
            claims = jwt.decode(tokens(pool, username)["AccessToken"], options={"verify_signature": False})
            assert (claims["username"], claims["client_id"], claims["token_use"]) == (
                username,
                pool.client_id,
                "access",
            )
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert f"password {ready['password']}" in stderr
    assert not env_file.exists()


def test_an_existing_moto_gets_the_same_pool_once(moto_logs):
    run = [sys.executable, "-m", "local_cognito", "--endpoint", moto_logs.moto_url]
    first = json.loads(subprocess.run(run, cwd=BACKEND_DIR, capture_output=True, text=True, check=True).stdout)
    again = json.loads(subprocess.run(run, cwd=BACKEND_DIR, capture_output=True, text=True, check=True).stdout)
    assert (first["user_pool_id"], first["client_id"]) == (again["user_pool_id"], again["client_id"])
