"""What the benchmark reads from outside the app: worker CPU and memory, its log lines, the sinks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig

from tests.support.moto_logs import FAKE_CREDENTIALS, REGION

BACKEND_DIR = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ACCESS_LOGGER = "cruddur.access"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of `pid` so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    """Resident memory of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class AppLog:
    """Reads the app's stdout (one JSON line per record) as it grows, counting access lines by path."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._partial = b""
        self.access_by_path: Counter[str] = Counter()

    def read(self) -> Counter:
        """Consume new lines; return the updated access counts by path."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.startswith(b"{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("logger") == ACCESS_LOGGER:
                self.access_by_path[record.get("path", "")] += 1
        return self.access_by_path

    @property
    def access_total(self) -> int:
        """Requests the app answered so far (every path)."""
        return sum(self.access_by_path.values())


class Sinks:
    """`python -m tests.support.sinks` in its own process: the four vendor stand-ins on loopback."""

    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.sinks"],
            cwd=BACKEND_DIR,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line:
            self.process.wait(timeout=10)
            raise RuntimeError(f"tests.support.sinks exited with {self.process.returncode} before it was ready")
        self.addresses = json.loads(line)
        self.env = self.addresses["env"]
        self._cloudwatch: dict[str, CloudWatchReader] = {}

    def stats(self) -> dict:
        """The sinks' running summary (spans, segments, Rollbar items, log events)."""
        with urllib.request.urlopen(self.addresses["control_url"] + "/stats", timeout=30) as response:
            return json.loads(response.read())

    def peers(self) -> dict:
        """What the agents' stand-ins and the OTLP receiver decoded, as traces per service and path."""
        with urllib.request.urlopen(self.addresses["control_url"] + "/peers", timeout=120) as response:
            return json.loads(response.read())

    def cloudwatch(self, log_group: str) -> CloudWatchReader:
        """A reader of one log group, straight from moto (not through the fault proxy)."""
        if log_group not in self._cloudwatch:
            self._cloudwatch[log_group] = CloudWatchReader(self.addresses["moto_url"], log_group)
        return self._cloudwatch[log_group]

    def stop(self) -> dict:
        """SIGTERM; return the final summary."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            out, _ = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
        lines = [line for line in (out or "").splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {}


class CloudWatchReader:
    """Follows every stream of a log group with get_log_events tokens, so each poll reads only new events."""

    def __init__(self, moto_url: str, log_group: str):
        self.log_group = log_group
        self.client = boto3.client(
            "logs",
            endpoint_url=moto_url,
            region_name=REGION,
            aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            config=BotoConfig(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )
        self._tokens: dict[str, str | None] = {}
        self.events = 0
        self.access_by_path: Counter[str] = Counter()

    def read(self) -> Counter:
        """Consume new events; return access-log events by path."""
        try:
            streams = self.client.describe_log_streams(logGroupName=self.log_group)["logStreams"]
        except self.client.exceptions.ResourceNotFoundException:
            return self.access_by_path
        for stream in streams:
            name = stream["logStreamName"]
            while True:
                kwargs = {"logGroupName": self.log_group, "logStreamName": name, "startFromHead": True}
                if self._tokens.get(name):
                    kwargs["nextToken"] = self._tokens[name]
                page = self.client.get_log_events(**kwargs)
                for event in page["events"]:
                    self.events += 1
                    try:
                        record = json.loads(event["message"])
                    except ValueError:
                        continue
                    if isinstance(record, dict) and record.get("logger") == ACCESS_LOGGER:
                        self.access_by_path[record.get("path", "")] += 1
                token = page.get("nextForwardToken")
                if not page["events"] or token == self._tokens.get(name):
                    self._tokens[name] = token or self._tokens.get(name)
                    break
                self._tokens[name] = token
        return self.access_by_path


def wait_until(predicate, timeout: float, interval: float = 0.25) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; return whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
