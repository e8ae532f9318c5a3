"""CloudWatch Logs on loopback: moto in server mode, read back through boto3.

``MotoLogs().env()`` is what a subprocess (gunicorn) needs so that boto3's standard resolution lands
here: ``AWS_ENDPOINT_URL_CLOUDWATCH_LOGS``, a region and fake credentials.

moto keeps its accounts in module globals, so every moto server in one process shares them: a
reset through any of them wipes the session's log groups and Cognito pool. Nothing here resets;
a test that needs an empty account runs moto in a process of its own (``moto_process``).

For outages, ``MotoLogs(faults=True)`` puts a ``ForwardingServer`` (see ``faulty_http``) in front of
moto: ``endpoint`` is then the proxy and ``moto_logs.mode = "blackhole"`` (etc.) breaks the path
while the reader keeps talking to moto directly.
"""

import contextlib
import json
import logging
import subprocess
import sys
import threading
import uuid

import boto3
from botocore.config import Config as BotoConfig

from tests.support.faulty_http import LOOPBACK, ForwardingServer
from tests.support.waiting import wait_for

REGION = "us-east-1"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


class MotoLogs:
    """moto's threaded server as a CloudWatch Logs endpoint, with a reader."""

    def __init__(self, port=0, host=LOOPBACK, region=REGION, faults=False, proxy_port=0):
        """``port`` is moto's (or, with ``faults``, the proxy's ``proxy_port`` is the public one)."""
        self.host = host
        self.region = region
        self._port = port
        self._server = None
        self._proxy = ForwardingServer("http://unset:0", host=host, port=proxy_port) if faults else None
        self._client = None
        self._lock = threading.Lock()

    def start(self):
        """Start moto (and the fault proxy); return self."""
        # Imported here: moto's server pulls in every AWS backend, which takes a second or two.
        from moto.server import ThreadedMotoServer

        if self._server is None:
            # moto serves through werkzeug, which logs every request at INFO.
            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            self._server = ThreadedMotoServer(ip_address=self.host, port=self._port, verbose=False)
            self._server.start()
            self._port = self._server.get_host_and_port()[1]
            if self._proxy is not None:
                self._proxy.upstream = (self.host, self._port)
                self._proxy.start()
        return self

    def stop(self):
        """Stop the proxy and moto."""
        if self._proxy is not None:
            self._proxy.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def moto_url(self):
        """moto itself."""
        return f"http://{self.host}:{self._port}"

    @property
    def endpoint(self):
        """The URL the app should use (the fault proxy when there is one)."""
        return self._proxy.url if self._proxy is not None else self.moto_url

    @property
    def proxy(self):
        """The ``ForwardingServer`` in front of moto, or None."""
        return self._proxy

    @property
    def mode(self):
        """The proxy's fault mode (``ok`` without a proxy)."""
        return self._proxy.mode if self._proxy is not None else "ok"

    @mode.setter
    def mode(self, mode):
        if self._proxy is None:
            raise RuntimeError("MotoLogs(faults=True) is needed to inject faults")
        self._proxy.mode = mode

    def env(self):
        """Environment for a process whose boto3 should write logs here."""
        return {
            "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            **FAKE_CREDENTIALS,
        }

    # -- reading -------------------------------------------------------------------------------

    def client(self):
        """A boto3 ``logs`` client talking to moto directly (never through the fault proxy)."""
        with self._lock:
            if self._client is None:
                self._client = boto3.client(
                    "logs",
                    endpoint_url=self.moto_url,
                    region_name=self.region,
                    aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                    aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                    config=BotoConfig(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=10),
                )
            return self._client

    def log_groups(self):
        """Names of every log group."""
        paginator = self.client().get_paginator("describe_log_groups")
        return [g["logGroupName"] for page in paginator.paginate() for g in page["logGroups"]]

    def events(self, log_group, page_size=None):
        """Every event of ``log_group`` (all streams), oldest first; JSON messages parsed into ``"json"``.

        Each event is boto3's dict (``logStreamName``, ``timestamp``, ``message``...) plus ``json``:
        the parsed message, or None when the message is not a JSON object. Missing group -> [].
        ``page_size`` only changes how many round trips it takes.
        """
        client = self.client()
        try:
            paginator = client.get_paginator("filter_log_events")
            pages = paginator.paginate(
                logGroupName=log_group, PaginationConfig={"PageSize": page_size} if page_size else {}
            )
            events = [event for page in pages for event in page["events"]]
        except client.exceptions.ResourceNotFoundException:
            return []
        for event in events:
            try:
                parsed = json.loads(event["message"])
            except ValueError:
                parsed = None
            event["json"] = parsed if isinstance(parsed, dict) else None
        events.sort(key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))
        return events

    def records(self, log_group):
        """The parsed JSON objects of ``log_group`` (non-JSON messages skipped)."""
        return [event["json"] for event in self.events(log_group) if event["json"] is not None]

    def wait_for_records(self, log_group, predicate=lambda record: True, count=1, timeout=15.0):
        """Wait until ``count`` JSON records of ``log_group`` match ``predicate``; return them."""

        def matching():
            found = [r for r in self.records(log_group) if predicate(r)]
            return found if len(found) >= count else None

        return wait_for(matching, timeout, interval=0.2, message=f"fewer than {count} matching records in {log_group}")

    def event_count(self):
        """Events across every log group (the benchmark's summary)."""
        return sum(len(self.events(group)) for group in self.log_groups())


@contextlib.contextmanager
def moto_process(host=LOOPBACK):
    """moto's server in a child process, with accounts of its own; yields its URL (``/moto-api/reset`` is safe)."""
    script = (
        "import logging, sys\n"
        "from moto.server import ThreadedMotoServer\n"
        "logging.getLogger('werkzeug').setLevel(logging.WARNING)\n"
        f"server = ThreadedMotoServer(ip_address={host!r}, port=0, verbose=False)\n"
        "server.start()\n"
        "print(server.get_host_and_port()[1], flush=True)\n"
        "sys.stdin.read()\n"  # until the parent closes our stdin (or dies)
        "server.stop()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = child.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"moto did not start (exit code {child.wait(10)})")
        yield f"http://{host}:{port}"
    finally:
        child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def unique_log_group(prefix="cruddur-test"):
    """A log group name no other test uses (``moto_logs`` is shared by the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
