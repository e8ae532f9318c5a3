"""The JWKS stand-in answers like Cognito's endpoint: the pool's key set at its own path only."""

import json
import urllib.error
import urllib.request

import jwt
import pytest

from tests.support.jwks_server import JWKSServer, SigningKey, access_claims


def fetch(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read()


def test_serves_the_pools_keys_and_they_verify_its_tokens():
    key = SigningKey()
    with JWKSServer("us-east-1_Pool1", [key]) as server:
        status, content_type, body = fetch(f"{server.endpoint}/us-east-1_Pool1/.well-known/jwks.json")
        assert (status, content_type) == (200, "application/json")
        (published,) = json.loads(body)["keys"]
        assert {published["kid"], published["alg"], published["kty"], published["use"]} == {
            key.kid,
            "RS256",
            "RSA",
            "sig",
        }
        assert "d" not in published  # the public half only
        public = jwt.PyJWK(published).key
        claims = jwt.decode(key.token(access_claims("us-east-1_Pool1", "client")), public, algorithms=["RS256"])
        assert claims["token_use"] == "access"
        assert server.fetches == 1


@pytest.mark.parametrize("path", ["/us-east-1_Other/.well-known/jwks.json", "/.well-known/jwks.json", "/"])
def test_another_path_is_404_as_for_a_pool_that_does_not_exist(path):
    with JWKSServer("us-east-1_Pool1", [SigningKey()]) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            fetch(server.endpoint + path)
        assert refused.value.code == 404
        assert server.fetches == 0


def test_html_mode_answers_a_page_instead_of_keys():
    with JWKSServer("p", [SigningKey()]) as server:
        server.html = True
        status, content_type, body = fetch(f"{server.endpoint}/p/.well-known/jwks.json")
        assert (status, content_type) == (200, "text/html") and body.startswith(b"<html>")
