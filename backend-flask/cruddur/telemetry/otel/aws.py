"""AWS's OTLP endpoints (X-Ray traces, CloudWatch Logs): where they are and how requests are signed.

The endpoint, region and credentials come from botocore's standard resolution, so what works for
boto3 works here. Signing is a `requests` auth hook: it signs exactly the bytes that go out, on the
exporter's thread, where credentials are first resolved (the chain may ask instance metadata).
"""

from __future__ import annotations

import logging
import threading

import botocore.session
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.configprovider import ConfiguredEndpointProvider
from botocore.exceptions import NoCredentialsError


class SigV4RequestAuth(requests.auth.AuthBase):
    """Signs each prepared request with SigV4 for one service and region (botocore's signer)."""

    def __init__(self, service: str, region: str):
        self.session = botocore.session.Session()
        self.service = service
        self.region = region
        self._credentials = None
        self._lock = threading.Lock()

    def _frozen_credentials(self):
        with self._lock:
            if self._credentials is None:
                self._credentials = self.session.get_credentials()
            if self._credentials is None:
                raise NoCredentialsError()
            # A consistent (key, secret, token) triple, refreshed first if it is about to expire.
            return self._credentials.get_frozen_credentials()

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add X-Amz-Date, X-Amz-Security-Token (temporary credentials) and Authorization."""
        headers = {k: v for k, v in prepared.headers.items() if k.lower() not in ("authorization", "x-amz-date")}
        aws_request = AWSRequest(method=prepared.method, url=prepared.url, headers=headers, data=prepared.body or b"")
        SigV4Auth(self._frozen_credentials(), self.service, self.region).add_auth(aws_request)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in aws_request.headers:
                prepared.headers[name] = aws_request.headers[name]
        return prepared


def signed_session(service: str, region: str) -> requests.Session:
    """A `requests` session whose every request is SigV4-signed for `service` in `region`.

    botocore's DEBUG records are kept out, whatever the root level: they hold signatures and tokens.
    """
    botocore_logger = logging.getLogger("botocore")
    if botocore_logger.level < logging.INFO:
        botocore_logger.setLevel(logging.INFO)
    http = requests.Session()
    http.auth = SigV4RequestAuth(service, region)
    return http


def resolve(service_id: str, fallback_region: str = "") -> tuple[str, str, str]:
    """(endpoint base URL, region, "") as boto3 would resolve them for `service_id`, or ("", "", why not).

    No credentials, network or service model (a client would load one: tens of ms per worker).
    """
    try:
        session = botocore.session.Session()
        region = session.get_config_variable("region") or fallback_region
        if not region:
            return "", "", "botocore finds no region"
        configured = None
        if not session.get_config_variable("ignore_configured_endpoint_urls"):
            provider = ConfiguredEndpointProvider(session.full_config, session.get_scoped_config(), service_id)
            configured = provider.provide()
    except Exception as error:  # a malformed config file or profile
        return "", "", f"botocore cannot resolve the endpoint ({type(error).__name__})"
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return (configured or f"https://{service_id}.{region}.{suffix}").rstrip("/"), region, ""
