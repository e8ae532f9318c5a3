"""moto as CloudWatch Logs: boto3 writes through the standard endpoint variable and reads back every event."""

import contextlib
import json
import os
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from tests.support.moto_logs import MotoLogs, moto_process, unique_log_group


def writer(endpoint, read_timeout=5):
    """A logs client as the app would build it, but with an explicit endpoint and no retries."""
    return boto3.client(
        "logs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=read_timeout),
    )


def put(client, group, messages, stream="worker-1"):
    """Create the group/stream if needed and put ``messages`` in order."""
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_group(logGroupName=group)
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    events = [{"timestamp": now + i, "message": m} for i, m in enumerate(messages)]
    client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def test_events_of_a_group_across_streams_and_pages(moto_logs, log_group):
    client = writer(moto_logs.endpoint)
    put(client, log_group, [json.dumps({"level": "INFO", "n": n}) for n in range(25)], stream="a")
    put(client, log_group, ["not json", json.dumps(["a list"])], stream="b")

    events = moto_logs.events(log_group, page_size=7)
    assert len(events) == 27
    assert {e["logStreamName"] for e in events} == {"a", "b"}
    records = moto_logs.records(log_group)
    assert [r["n"] for r in records] == list(range(25))
    assert [e["json"] for e in events if e["logStreamName"] == "b"] == [None, None]
    assert moto_logs.wait_for_records(log_group, lambda r: r["n"] == 24) == [{"level": "INFO", "n": 24}]
    assert log_group in moto_logs.log_groups()
    assert moto_logs.events(unique_log_group()) == []


def test_env_points_a_subprocess_boto3_at_moto(moto_logs, log_group):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(moto_logs.env())
    script = (
        "import boto3, json, time\n"
        "c = boto3.client('logs')\n"
        f"c.create_log_group(logGroupName='{log_group}')\n"
        f"c.create_log_stream(logGroupName='{log_group}', logStreamName='s')\n"
        f"c.put_log_events(logGroupName='{log_group}', logStreamName='s', "
        "logEvents=[{'timestamp': int(time.time() * 1000), 'message': json.dumps({'from': 'child'})}])\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert moto_logs.records(log_group) == [{"from": "child"}]


def test_fault_proxy_breaks_the_path_but_not_the_reader():
    with MotoLogs(faults=True) as logs:
        group = unique_log_group()
        assert logs.endpoint != logs.moto_url
        client = writer(logs.endpoint, read_timeout=0.5)
        put(client, group, ["through the proxy"])
        assert [e["message"] for e in logs.events(group)] == ["through the proxy"]

        for mode, error in [
            ("status500", ClientError),
            ("status429", ClientError),
            ("refuse", EndpointConnectionError),
            ("blackhole", (ReadTimeoutError, ConnectTimeoutError)),
        ]:
            logs.mode = mode
            with pytest.raises(error):
                put(client, group, [f"lost in {mode}"])
            assert len(logs.events(group)) == 1, f"{mode} let an event through"

        logs.mode = "ok"
        put(client, group, ["after the outage"])
        assert [e["message"] for e in logs.events(group)] == ["through the proxy", "after the outage"]

    with MotoLogs() as plain, pytest.raises(RuntimeError):
        plain.mode = "refuse"


def test_resetting_a_moto_process_leaves_the_sessions_moto_alone(moto_logs, log_group):
    """moto's accounts are per process: a reset in this one would wipe the session's groups and Cognito pool."""
    import urllib.request

    session = writer(moto_logs.moto_url)
    session.create_log_group(logGroupName=log_group)
    with moto_process() as url:
        own = writer(url)
        own.create_log_group(logGroupName="its-own")
        urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST"), timeout=10)
        assert own.describe_log_groups()["logGroups"] == []
    assert log_group in moto_logs.log_groups()
