"""Sign-in: every kind of bad token is a 401, a good one names the acting user, the JWKS's outages
are 503s within the fetch timeout, and conversations stay private.

Two Cognito stand-ins:
- the local pool (local_cognito.py: moto's cognito-idp on loopback) for real tokens from
  InitiateAuth (USER_PASSWORD_AUTH), a second app client and a second pool;
- ``JWKSServer`` (tests/support/jwks_server.py), a JWKS endpoint with keys of our own, for tokens
  that differ from a valid one in exactly one claim or header, and for outages.

Where moto is more lenient than Cognito, and what these tests therefore do not rely on:
- ConfirmSignUp accepts any confirmation code (Cognito checks the code it sent);
- every moto pool signs with the same key and the same `kid` ("dummy"): a token from another moto
  pool verifies by signature, so the other-pool case here is refused by `iss` (and `client_id`);
  another key under a known `kid` is tested with our own keys;
- moto's JWKS answers for any pool id, even one that does not exist (Cognito answers 404);
  JWKSServer answers only the pool's own path;
- moto does not enforce an app client's ExplicitAuthFlows; its access tokens expire after an hour,
  so expiry is tested with tokens of our own.
"""

from __future__ import annotations

import json
import time
import uuid

import jwt
import pytest

from cruddur import create_app
from cruddur.store import open_store
from local_cognito import cognito_client
from tests.support.cognito import bearer, sign_up, signed_in_config, tokens
from tests.support.faulty_http import closed_port
from tests.support.jwks_server import JWKSServer, SigningKey, access_claims, b64url

USER_ROUTES = [
    ("GET", "/api/activities/notifications", None),
    ("POST", "/api/activities", {"message": "hi", "ttl": "1-hour"}),
    ("POST", f"/api/activities/{uuid.uuid4()}/reply", {"message": "hi"}),
    ("GET", "/api/message_groups", None),
    ("GET", "/api/messages/@bayko", None),
    ("POST", "/api/messages", {"message": "hi", "user_receiver_handle": "worf"}),
]
PUBLIC_ROUTES = ["/api/health-check", "/api/activities/home", "/api/activities/@worf", "/api/activities/search?term=x"]
POST = {"message": "signed in", "ttl": "1-hour"}
CLIENT_ID = "cruddurclientid0000000001"
POOL_ID = "us-east-1_CrUdDuR01"


def refused(response, code="invalid_token"):
    """The 401 the contract gives for `code`, with its challenge."""
    challenge = "Bearer" if code == "sign_in_required" else 'Bearer error="invalid_token"'
    return (
        response.status_code == 401
        and response.get_json()["errors"] == [code]
        and response.headers["WWW-Authenticate"] == challenge
    )


@pytest.fixture
def sqlite_config(tmp_path):
    from cruddur.config import Config

    return Config.from_env({}).replace(
        env="test", database_url=f"sqlite:///{tmp_path / 'cruddur.db'}", code_version="test", seed_data=True
    )


@pytest.fixture
def pool_client(sqlite_config, cognito_pool):
    """A client of an app signed in against the local pool (SQLite)."""
    return create_app(signed_in_config(sqlite_config, cognito_pool)).test_client()


# -- real tokens from the local pool ----------------------------------------------------------------


def test_no_token_is_sign_in_required_on_every_route_that_needs_a_user(pool_client):
    for method, path, body in USER_ROUTES:
        assert refused(pool_client.open(path, method=method, json=body), "sign_in_required"), path


def test_public_routes_need_no_token_and_ignore_a_bad_one(pool_client):
    crud = pool_client.get("/api/activities/home").get_json()[0]
    for path in [*PUBLIC_ROUTES, f"/api/activities/{crud['uuid']}"]:
        assert pool_client.get(path).status_code == 200, path
        assert pool_client.get(path, headers=bearer("garbage")).status_code == 200, path


def test_an_access_token_acts_as_its_user(pool_client, cognito_pool):
    access = tokens(cognito_pool, "bayko")["AccessToken"]
    posted = pool_client.post("/api/activities", json=POST, headers=bearer(access))
    assert posted.status_code == 200
    assert (posted.json["handle"], posted.json["display_name"]) == ("bayko", "Andrew Bayko")


def test_a_body_field_cannot_choose_the_author(pool_client, cognito_pool):
    access = tokens(cognito_pool, "bayko")["AccessToken"]
    body = {**POST, "handle": "worf", "user_handle": "worf", "username": "worf", "display_name": "Worf"}
    assert pool_client.post("/api/activities", json=body, headers=bearer(access)).json["handle"] == "bayko"
    message = {"message": "hi", "user_receiver_handle": "garek", "handle": "worf", "user_sender_handle": "worf"}
    assert pool_client.post("/api/messages", json=message, headers=bearer(access)).json["handle"] == "bayko"


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "e30.e30.", "Bearer", "x" * 20_000, "eyJhbGciOiJSUzI1NiJ9." * 3],
    ids=["garbage", "three-parts", "empty-json", "word", "huge", "repeated-header"],
)
def test_garbage_is_invalid_token(pool_client, token):
    assert refused(pool_client.post("/api/activities", json=POST, headers=bearer(token)))


def test_an_authorization_header_that_is_not_a_bearer_token_is_invalid(pool_client, cognito_pool):
    access = tokens(cognito_pool, "bayko")["AccessToken"]
    for header in ("Basic YmF5a286cGFzc3dvcmQ=", f"Token {access}", "Bearer ", access):
        assert refused(pool_client.post("/api/activities", json=POST, headers={"Authorization": header})), header


def test_an_id_token_is_not_an_access_token(pool_client, cognito_pool):
    id_token = tokens(cognito_pool, "bayko")["IdToken"]
    assert jwt.decode(id_token, options={"verify_signature": False})["token_use"] == "id"
    assert refused(pool_client.post("/api/activities", json=POST, headers=bearer(id_token)))


def test_a_token_for_another_app_client_is_refused(pool_client, cognito_pool):
    client = cognito_client(cognito_pool.endpoint)
    other = client.create_user_pool_client(
        UserPoolId=cognito_pool.pool_id,
        ClientName=f"other-{uuid.uuid4().hex[:6]}",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    result = client.initiate_auth(
        ClientId=other,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "bayko", "PASSWORD": cognito_pool.password},
    )["AuthenticationResult"]
    claims = jwt.decode(result["AccessToken"], options={"verify_signature": False})
    assert (claims["iss"].endswith(cognito_pool.pool_id), claims["client_id"]) == (True, other)
    assert refused(pool_client.post("/api/activities", json=POST, headers=bearer(result["AccessToken"])))


def test_a_token_from_another_pool_is_refused(pool_client, cognito_pool):
    client = cognito_client(cognito_pool.endpoint)
    pool_id = client.create_user_pool(PoolName=f"elsewhere-{uuid.uuid4().hex[:6]}")["UserPool"]["Id"]
    client_id = client.create_user_pool_client(UserPoolId=pool_id, ClientName="web")["UserPoolClient"]["ClientId"]
    client.admin_create_user(UserPoolId=pool_id, Username="bayko", MessageAction="SUPPRESS")
    client.admin_set_user_password(UserPoolId=pool_id, Username="bayko", Password=cognito_pool.password, Permanent=True)
    access = client.initiate_auth(
        ClientId=client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "bayko", "PASSWORD": cognito_pool.password},
    )["AuthenticationResult"]["AccessToken"]
    assert jwt.decode(access, options={"verify_signature": False})["iss"].endswith(pool_id)
    assert refused(pool_client.post("/api/activities", json=POST, headers=bearer(access)))


def test_a_tampered_payload_is_refused(pool_client, cognito_pool):
    header, payload, signature = tokens(cognito_pool, "bayko")["AccessToken"].split(".")
    claims = jwt.decode(f"{header}.{payload}.{signature}", options={"verify_signature": False})
    forged = b64url(json.dumps({**claims, "username": "worf"}).encode())
    assert refused(pool_client.post("/api/activities", json=POST, headers=bearer(f"{header}.{forged}.{signature}")))


def test_alg_none_is_refused(pool_client, cognito_pool):
    _, payload, _ = tokens(cognito_pool, "bayko")["AccessToken"].split(".")
    for alg in ("none", "None", "NONE"):
        header = b64url(json.dumps({"alg": alg, "kid": "dummy", "typ": "JWT"}).encode())
        assert refused(pool_client.post("/api/activities", json=POST, headers=bearer(f"{header}.{payload}."))), alg


def test_a_refreshed_access_token_still_acts(pool_client, cognito_pool):
    first = tokens(cognito_pool, "worf")
    refreshed = cognito_client(cognito_pool.endpoint).initiate_auth(
        ClientId=cognito_pool.client_id,
        AuthFlow="REFRESH_TOKEN_AUTH",
        AuthParameters={"REFRESH_TOKEN": first["RefreshToken"]},
    )["AuthenticationResult"]["AccessToken"]
    assert pool_client.post("/api/activities", json=POST, headers=bearer(refreshed)).json["handle"] == "worf"


def test_a_new_cognito_user_becomes_a_cruddur_user_on_first_use(config, cognito_pool):
    app = create_app(signed_in_config(config, cognito_pool))
    client = app.test_client()
    username = f"new{uuid.uuid4().hex[:8]}"
    sign_up(cognito_pool, username, "Newcomer-pass-1", f"{username}@example.invalid")
    access = tokens(cognito_pool, username, "Newcomer-pass-1")["AccessToken"]
    sub = jwt.decode(access, options={"verify_signature": False})["sub"]
    assert client.get(f"/api/activities/@{username}").status_code == 404
    posted = client.post("/api/activities", json=POST, headers=bearer(access)).json
    assert (posted["handle"], posted["display_name"]) == (username, username)
    assert client.post("/api/activities", json=POST, headers=bearer(access)).status_code == 200
    assert [a["handle"] for a in client.get(f"/api/activities/@{username}").json] == [username, username]
    with open_store(config) as store:
        rows = store._execute("SELECT handle, cognito_user_id FROM users WHERE handle = ?", (username,)).fetchall()
        assert [(r["handle"], r["cognito_user_id"]) for r in rows] == [(username, sub)]
        seeded = store._execute("SELECT cognito_user_id FROM users WHERE handle = 'bayko'").fetchone()
        assert seeded["cognito_user_id"] is None  # a seed user gets its sub when it first signs in


def test_messages_are_private_to_their_two_members(config, cognito_pool):
    client = create_app(signed_in_config(config, cognito_pool)).test_client()
    worf, garek, bayko = (bearer(tokens(cognito_pool, u)["AccessToken"]) for u in ("worf", "garek", "bayko"))
    secret = f"only for bayko {uuid.uuid4().hex}"
    sent = client.post("/api/messages", json={"message": secret, "user_receiver_handle": "bayko"}, headers=worf)
    assert sent.status_code == 200 and sent.json["handle"] == "worf"

    def texts(headers, other):
        return [m["message"] for m in client.get(f"/api/messages/@{other}", headers=headers).json]

    assert secret in texts(worf, "bayko")
    assert secret in texts(bayko, "worf")
    assert secret not in texts(garek, "bayko")
    assert secret not in texts(garek, "worf")
    groups = {
        h: [g["handle"] for g in client.get("/api/message_groups", headers=hs).json]
        for h, hs in (("worf", worf), ("garek", garek), ("bayko", bayko))
    }
    assert "bayko" in groups["worf"] and "worf" in groups["bayko"]
    assert "worf" not in groups["garek"] and "bayko" not in groups["garek"]
    assert refused(client.get("/api/messages/@bayko"), "sign_in_required")


# -- without Cognito ---------------------------------------------------------------------------------


def test_production_without_cognito_needs_a_user_everywhere_it_matters(sqlite_config):
    client = create_app(sqlite_config.replace(env="production")).test_client()
    for method, path, body in USER_ROUTES:
        assert refused(client.open(path, method=method, json=body), "sign_in_required"), path
    for path in PUBLIC_ROUTES:
        assert client.get(path).status_code == 200, path


def test_development_without_cognito_acts_as_the_configured_user_and_says_so(sqlite_config, caplog):
    caplog.set_level("INFO", logger="cruddur.auth")
    client = create_app(sqlite_config.replace(user_handle="garek")).test_client()
    assert client.post("/api/activities", json=POST).json["handle"] == "garek"
    lines = [r.getMessage() for r in caplog.records if r.name == "cruddur.auth"]
    assert lines == ["sign-in is off (AWS_COGNITO_USER_POOL_ID unset): everyone acts as @garek"]


def test_cors_preflights_pass_and_allow_the_authorization_header(pool_client):
    """Browsers send a preflight without credentials before every signed-in call: it must succeed."""
    for method, path, _body in USER_ROUTES:
        preflight = pool_client.options(
            path,
            headers={
                "Origin": "http://localhost:3000",
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200, path
        assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
        allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed, path


# -- tokens of our own, one fault each -------------------------------------------------------------


@pytest.fixture
def key():
    return SigningKey()


@pytest.fixture
def jwks(key):
    with JWKSServer(POOL_ID, [key]) as server:
        yield server


def own_pool_app(config, jwks, **changes):
    return create_app(
        config.replace(
            cognito_user_pool_id=POOL_ID,
            cognito_client_id=CLIENT_ID,
            cognito_endpoint=jwks.endpoint,
            aws_default_region="us-east-1",
            **changes,
        )
    )


@pytest.fixture
def own_client(sqlite_config, jwks):
    return own_pool_app(sqlite_config, jwks).test_client()


def post_with(client, token):
    return client.post("/api/activities", json=POST, headers=bearer(token))


def test_a_token_of_our_own_that_is_valid_acts(own_client, key):
    assert post_with(own_client, key.token(access_claims(POOL_ID, CLIENT_ID, "londo"))).json["handle"] == "londo"


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"exp": int(time.time()) - 30}, "expired beyond the leeway"),
        ({"iss": f"https://cognito-idp.us-east-1.amazonaws.com/{POOL_ID}x"}, "another pool"),
        ({"iss": f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL_ID}"}, "another region"),
        ({"client_id": "someotherclient"}, "another client"),
        ({"token_use": "id"}, "an ID token"),
        ({"token_use": None, "aud": CLIENT_ID}, "no token_use, an audience"),
        ({"exp": None}, "no expiry"),
        ({"username": None}, "no username"),
        ({"username": " "}, "a blank username"),
        ({"sub": None}, "no sub"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_one_wrong_claim_is_invalid_token(own_client, key, changes, why):
    assert refused(post_with(own_client, key.token(access_claims(POOL_ID, CLIENT_ID, **changes)))), why


def test_expiry_has_a_few_seconds_of_leeway(own_client, key):
    assert (
        post_with(own_client, key.token(access_claims(POOL_ID, CLIENT_ID, exp=int(time.time()) - 2))).status_code == 200
    )


def test_another_key_under_a_known_kid_is_refused(own_client, key):
    impostor = SigningKey(kid=key.kid)
    assert refused(post_with(own_client, impostor.token(access_claims(POOL_ID, CLIENT_ID))))


def test_hs256_signed_with_the_public_key_is_refused(own_client, key):
    from cryptography.hazmat.primitives import serialization

    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "kid": key.kid, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(access_claims(POOL_ID, CLIENT_ID)).encode())
    import hashlib
    import hmac

    signature = b64url(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert refused(post_with(own_client, f"{header}.{payload}.{signature}"))


def test_a_token_without_a_kid_is_refused_without_a_fetch(own_client, key, jwks):
    token = jwt.encode(access_claims(POOL_ID, CLIENT_ID), key.private, algorithm="RS256")
    assert refused(post_with(own_client, token))
    assert jwks.fetches == 0


def test_an_unknown_kid_refetches_the_keys_once(sqlite_config, jwks, key):
    client = own_pool_app(sqlite_config, jwks, jwks_refetch_cooldown=0).test_client()
    assert post_with(client, key.token(access_claims(POOL_ID, CLIENT_ID))).status_code == 200
    assert jwks.fetches == 1
    assert post_with(client, key.token(access_claims(POOL_ID, CLIENT_ID))).status_code == 200
    assert jwks.fetches == 1  # cached
    rotated = SigningKey()
    assert refused(post_with(client, rotated.token(access_claims(POOL_ID, CLIENT_ID))))
    assert jwks.fetches == 2  # one refetch, still unknown
    jwks.keys.append(rotated)  # Cognito publishes the new key
    assert post_with(client, rotated.token(access_claims(POOL_ID, CLIENT_ID))).status_code == 200
    assert jwks.fetches == 3
    assert post_with(client, rotated.token(access_claims(POOL_ID, CLIENT_ID))).status_code == 200
    assert jwks.fetches == 3


def test_made_up_kids_cannot_make_every_request_fetch(own_client, jwks, key):
    assert post_with(own_client, key.token(access_claims(POOL_ID, CLIENT_ID))).status_code == 200
    for _ in range(20):
        assert refused(post_with(own_client, key.token(access_claims(POOL_ID, CLIENT_ID), kid=uuid.uuid4().hex)))
    assert jwks.fetches == 1  # within the cooldown after the fetch, an unknown kid is simply unknown


# -- the JWKS down or slow ---------------------------------------------------------------------------


def unavailable(response):
    return response.status_code == 503 and response.get_json()["errors"] == ["auth_unavailable"]


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def test_jwks_unreachable_is_503_at_once(sqlite_config, key):
    client = create_app(
        sqlite_config.replace(
            cognito_user_pool_id=POOL_ID,
            cognito_client_id=CLIENT_ID,
            cognito_endpoint=f"http://127.0.0.1:{closed_port()}",
        )
    ).test_client()
    token = key.token(access_claims(POOL_ID, CLIENT_ID))
    response, seconds = timed(lambda: post_with(client, token))
    assert unavailable(response) and response.headers["Retry-After"]
    assert seconds < 1.0, seconds
    print(f"JWKS refused: 503 in {seconds * 1000:.1f} ms")
    # The public routes still answer, token or not.
    assert client.get("/api/activities/home", headers=bearer(token)).status_code == 200


@pytest.mark.parametrize("mode", ["blackhole", "slow"])
def test_jwks_that_never_answers_is_503_within_the_timeout(sqlite_config, jwks, key, mode):
    jwks.mode, jwks.delay = mode, 30
    client = own_pool_app(sqlite_config, jwks, jwks_timeout=1.0).test_client()
    token = key.token(access_claims(POOL_ID, CLIENT_ID))
    response, seconds = timed(lambda: post_with(client, token))
    assert unavailable(response)
    assert 0.9 <= seconds < 2.0, seconds
    # Requests right after a failed fetch do not wait for another timeout.
    again, fast = timed(lambda: post_with(client, token))
    assert unavailable(again) and fast < 0.2, fast
    print(f"JWKS {mode}: 503 in {seconds * 1000:.0f} ms with a 1 s timeout, then {fast * 1000:.1f} ms")


@pytest.mark.parametrize("fault", ["status500", "html"])
def test_a_jwks_that_answers_nonsense_is_503_not_500(sqlite_config, jwks, key, fault):
    if fault == "html":
        jwks.html = True
    else:
        jwks.mode = fault
    client = own_pool_app(sqlite_config, jwks).test_client()
    assert unavailable(post_with(client, key.token(access_claims(POOL_ID, CLIENT_ID))))


def test_known_keys_keep_working_while_the_jwks_is_down(sqlite_config, jwks, key):
    client = own_pool_app(sqlite_config, jwks, jwks_lifespan=0.2).test_client()
    assert post_with(client, key.token(access_claims(POOL_ID, CLIENT_ID))).status_code == 200
    jwks.mode = "refuse"
    time.sleep(0.3)  # the cached key set has expired: the next request tries to fetch it again
    assert post_with(client, key.token(access_claims(POOL_ID, CLIENT_ID))).status_code == 200
    assert unavailable(post_with(client, SigningKey().token(access_claims(POOL_ID, CLIENT_ID))))
