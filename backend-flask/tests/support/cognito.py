"""Cognito on loopback: the local pool of `local_cognito` (moto's cognito-idp), real tokens from it.

``signed_in_config(config, pool)`` points an app at the pool; ``tokens(pool, username)`` signs in
with USER_PASSWORD_AUTH as the browser does and returns Cognito's AuthenticationResult
(AccessToken, IdToken, RefreshToken).
"""

from local_cognito import LocalPool, cognito_client


def signed_in_config(config, pool: LocalPool):
    """`config` with sign-in on, against `pool`."""
    return config.replace(
        cognito_user_pool_id=pool.pool_id,
        cognito_client_id=pool.client_id,
        cognito_endpoint=pool.endpoint,
        aws_default_region=pool.region,
    )


def tokens(pool: LocalPool, username: str, password: str | None = None) -> dict:
    """Sign in as `username` (a seed user's development password by default)."""
    result = cognito_client(pool.endpoint, pool.region).initiate_auth(
        ClientId=pool.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": username, "PASSWORD": password or pool.password},
    )
    return result["AuthenticationResult"]


def sign_up(pool: LocalPool, username: str, password: str, email: str) -> None:
    """Sign up and confirm, as the browser does (moto accepts any confirmation code)."""
    client = cognito_client(pool.endpoint, pool.region)
    client.sign_up(
        ClientId=pool.client_id,
        Username=username,
        Password=password,
        UserAttributes=[{"Name": "email", "Value": email}],
    )
    client.confirm_sign_up(ClientId=pool.client_id, Username=username, ConfirmationCode="123456")


def bearer(token: str) -> dict:
    """The Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}
