"""An X-Ray daemon stand-in: a UDP socket on loopback that parses segment datagrams.

The SDK's ``UDPEmitter`` sends ``{"format":"json","version":1}\\n{document}`` per datagram, where the
document is a segment or an independently sent subsegment (``"type": "subsegment"``). Documents are
kept as dicts in arrival order.

Optionally (``sampling_rules=[...]``) it also answers the daemon's TCP sampling API on the same port
(``POST /GetSamplingRules``, ``POST /SamplingTargets``), which the SDK's centralized sampler polls.

Modes: ``ok``; ``drop`` (datagrams are read and counted but not kept); ``refuse`` (the port is closed,
as when no daemon runs; switching back rebinds the same port).
"""

import json
import socket
import threading
import time

from tests.support.faulty_http import LOOPBACK, FaultyHTTPServer, Response
from tests.support.waiting import wait_for

HEADER = {"format": "json", "version": 1}
UDP_MODES = ("ok", "drop", "refuse")


def sampling_rule(name, priority, fixed_rate, reservoir, service="*", arn_region="us-east-1"):
    """A SamplingRule in the X-Ray API's shape (as GetSamplingRules returns it), matching every request."""
    return {
        "RuleName": name,
        "RuleARN": f"arn:aws:xray:{arn_region}:123456789012:sampling-rule/{name}",
        "ResourceARN": "*",
        "Priority": priority,
        "FixedRate": fixed_rate,
        "ReservoirSize": reservoir,
        "ServiceName": service,
        "ServiceType": "*",
        "Host": "*",
        "HTTPMethod": "*",
        "URLPath": "*",
        "Version": 1,
        "Attributes": {},
    }


def parse_datagram(data):
    """Split one daemon datagram into (header dict, document dict); raise ValueError if malformed."""
    text = data.decode("utf-8")
    header_line, sep, body = text.partition("\n")
    if not sep:
        raise ValueError("no header line")
    header = json.loads(header_line)
    if header != HEADER:
        raise ValueError(f"unexpected header {header!r}")
    return header, json.loads(body)


def flatten(document):
    """The document and every nested subsegment, depth first."""
    found = [document]
    for child in document.get("subsegments", ()):
        found.extend(flatten(child))
    return found


def xray_trace_id(otel_trace_id):
    """The X-Ray form (``1-<8 hex>-<24 hex>``) of a 32-hex-digit OpenTelemetry trace id."""
    otel_trace_id = otel_trace_id.lower()
    return f"1-{otel_trace_id[:8]}-{otel_trace_id[8:]}"


def otel_trace_id(xray_id):
    """The 32-hex-digit OpenTelemetry form of an X-Ray trace id."""
    _, epoch, rest = xray_id.split("-")
    return (epoch + rest).lower()


class _SamplingAPI(FaultyHTTPServer):
    """The daemon's TCP side: the two sampling calls the SDK's connector makes through botocore."""

    name = "xray-sampling"

    def __init__(self, rules, **kwargs):
        super().__init__(**kwargs)
        self.rules = rules

    def handle(self, request):
        """Answer GetSamplingRules with the configured rules, SamplingTargets with their fixed rates."""
        now = time.time()
        if request.path.startswith("/GetSamplingRules"):
            records = [{"SamplingRule": rule, "CreatedAt": now - 60, "ModifiedAt": now - 60} for rule in self.rules]
            return Response.json(200, {"SamplingRuleRecords": records})
        if request.path.startswith("/SamplingTargets"):
            statistics = request.json().get("SamplingStatisticsDocuments", [])
            rates = {rule.get("RuleName"): rule.get("FixedRate", 0.05) for rule in self.rules}
            documents = [
                {
                    "RuleName": doc["RuleName"],
                    "FixedRate": rates.get(doc["RuleName"], 0.05),
                    "ReservoirQuota": 1,
                    "ReservoirQuotaTTL": now + 60,
                    "Interval": 10,
                }
                for doc in statistics
            ]
            return Response.json(
                200,
                {"SamplingTargetDocuments": documents, "LastRuleModification": now - 60, "UnprocessedStatistics": []},
            )
        return super().handle(request)


class XRayListener:
    """UDP X-Ray daemon stand-in; ``daemon_address`` goes into ``AWS_XRAY_DAEMON_ADDRESS``."""

    def __init__(self, port=0, mode="ok", host=LOOPBACK, sampling_rules=None):
        """Configure (nothing is bound until ``start``)."""
        if mode not in UDP_MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {UDP_MODES}")
        self.host = host
        self._port = port
        self._mode = mode
        self._lock = threading.RLock()
        self._documents = []
        self._malformed = []
        self._datagram_count = 0
        self._sock = None
        self._thread = None
        self._stop = threading.Event()
        self._started = False
        self._sampling = _SamplingAPI(sampling_rules, host=host) if sampling_rules is not None else None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self):
        """Bind the UDP port (and the sampling API's TCP port, the same number) and start reading."""
        with self._lock:
            if self._started:
                return self
            for _attempt in range(20):
                if self._mode != "refuse":
                    self._bind()
                elif not self._port:
                    self._port = _free_udp_port(self.host)
                if self._sampling is None:
                    break
                try:
                    self._sampling._port = self._port
                    self._sampling.start()
                    break
                except OSError:
                    # The UDP port number is taken on TCP: try another ephemeral number.
                    self._close_socket()
                    self._port = 0
            self._started = True
        return self

    def stop(self):
        """Stop reading and close the socket; safe to call twice."""
        with self._lock:
            self._close_socket()
            if self._sampling is not None:
                self._sampling.stop()
            self._started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def mode(self):
        """``ok``, ``drop`` or ``refuse``."""
        return self._mode

    @mode.setter
    def mode(self, mode):
        if mode not in UDP_MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {UDP_MODES}")
        with self._lock:
            previous, self._mode = self._mode, mode
            if not self._started or previous == mode:
                return
            if mode == "refuse":
                self._close_socket()
            elif previous == "refuse":
                self._bind()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self):
        """The UDP port."""
        return self._port

    @property
    def daemon_address(self):
        """``127.0.0.1:PORT`` for ``AWS_XRAY_DAEMON_ADDRESS``."""
        return f"{self.host}:{self._port}"

    @property
    def sampling(self):
        """The TCP sampling API server (a ``FaultyHTTPServer``), or None."""
        return self._sampling

    # -- accessors -----------------------------------------------------------------------------

    def documents(self):
        """Every document received (segments and independently sent subsegments), in arrival order."""
        with self._lock:
            return list(self._documents)

    def segments(self):
        """The top-level segments only."""
        return [d for d in self.documents() if d.get("type") != "subsegment"]

    def subsegments(self):
        """Every subsegment, whether nested in a document or sent on its own."""
        found = []
        for document in self.documents():
            for entity in flatten(document):
                if entity is not document or document.get("type") == "subsegment":
                    found.append(entity)
        return found

    def entities(self):
        """Every segment and subsegment, nested ones included."""
        return [entity for document in self.documents() for entity in flatten(document)]

    def documents_for_trace(self, trace_id):
        """Documents of one trace; ``trace_id`` in X-Ray form or as 32 hex digits."""
        if "-" not in trace_id:
            trace_id = xray_trace_id(trace_id)
        return [d for d in self.documents() if d.get("trace_id") == trace_id]

    def malformed(self):
        """Datagrams that did not parse, as (bytes, error text)."""
        with self._lock:
            return list(self._malformed)

    @property
    def datagram_count(self):
        """Datagrams read, in any mode."""
        with self._lock:
            return self._datagram_count

    def reset(self):
        """Forget everything received."""
        with self._lock:
            self._documents.clear()
            self._malformed.clear()
            self._datagram_count = 0

    def wait_for_segments(self, predicate=lambda segment: True, count=1, timeout=10.0):
        """Wait until ``count`` top-level segments match ``predicate``; return them."""

        def matching():
            found = [s for s in self.segments() if predicate(s)]
            return found if len(found) >= count else None

        return wait_for(matching, timeout, message=f"fewer than {count} matching segments at {self.daemon_address}")

    # -- internals -----------------------------------------------------------------------------

    def _bind(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((self.host, self._port))
        sock.settimeout(0.05)
        self._port = sock.getsockname()[1]
        self._sock = sock
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._read, args=(sock, self._stop), name=f"xray-{self._port}", daemon=True
        )
        self._thread.start()

    def _close_socket(self):
        sock, thread, stop = self._sock, self._thread, self._stop
        self._sock = self._thread = None
        if sock is None:
            return
        stop.set()
        thread.join(timeout=5)
        sock.close()

    def _read(self, sock, stop):
        while not stop.is_set():
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._datagram_count += 1
                if self._mode == "drop":
                    continue
                try:
                    _, document = parse_datagram(data)
                except ValueError as error:
                    self._malformed.append((data, str(error)))
                    continue
                self._documents.append(document)


def _free_udp_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
