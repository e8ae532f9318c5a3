"""An X-Ray daemon stand-in: a UDP socket on loopback that parses segment datagrams.

The SDK's ``UDPEmitter`` sends ``{"format":"json","version":1}\\n{document}`` per datagram, where the
document is a segment or an independently sent subsegment (``"type": "subsegment"``). Documents are
kept as dicts in arrival order.

Optionally (``sampling_rules=[...]``) it also answers the daemon's TCP sampling API on the same port
(``POST /GetSamplingRules``, ``POST /SamplingTargets``), which the SDK's centralized sampler polls.

Modes: ``ok``; ``drop`` (datagrams are read and counted but not kept); ``refuse`` (the port is closed,
as when no daemon runs; switching back rebinds the same port).

It is as strict as X-Ray: every document is checked against X-Ray's documented rules (``document_errors``,
each rule citing its source) and a document X-Ray would refuse is not kept as received but counted
and kept apart (``rejected()``), so a test asserting ``rejected() == []`` proves X-Ray would take
everything the app sent.

    python -m tests.support.xray_listener --port 0

runs it on its own: one JSON line with the address, then one line per document (``{"document": ...}``
or ``{"rejected": ..., "errors": [...]}``).
"""

import argparse
import json
import math
import re
import signal
import socket
import sys
import threading
import time

from tests.support.faulty_http import LOOPBACK, FaultyHTTPServer, Response
from tests.support.waiting import wait_for

HEADER = {"format": "json", "version": 1}
UDP_MODES = ("ok", "drop", "refuse")

# -- X-Ray's rules -----------------------------------------------------------------------------------
# "A segment document can be up to 64 kB" (X-Ray developer guide, "AWS X-Ray segment documents"); the
# daemon reads one document per UDP datagram. Read strictly: 64,000 bytes (under 64 KiB as well).
MAX_DOCUMENT_BYTES = 64_000
# trace_id: "three numbers separated by hyphens ... the version number, 1 ... the time of the original
# request, in Unix epoch time, in 8 hexadecimal digits ... a 96-bit identifier ... in 24 hexadecimal
# digits" (X-Ray API reference, PutTraceSegments; developer guide, "Segment documents").
TRACE_ID = re.compile(r"1-([0-9a-f]{8})-[0-9a-f]{24}")
# "spans with an embedded timestamp more than 30 days ago are rejected" (opentelemetry-sdk-extension-aws,
# AwsXRayIdGenerator, citing the developer guide's "Sending trace data to X-Ray": trace ids). The
# time is that "of the original request", so one after the document arrives is refused as well,
# beyond a clock-skew allowance.
MAX_TRACE_AGE_SECONDS = 30 * 24 * 3600
MAX_TRACE_FUTURE_SECONDS = 300
# id, parent_id: "A 64-bit identifier ... in 16 hexadecimal digits" (PutTraceSegments; segment documents).
ENTITY_ID = re.compile(r"[0-9a-f]{16}")
# name: "The logical name of the service that handled the request, up to 200 characters ... Names can
# contain Unicode letters, numbers, and whitespace, and the following symbols: _, ., :, /, %, &, #, =,
# +, \\, -, @" (segment documents, "Segment fields").
MAX_NAME_CHARS = 200
NAME = re.compile(r"[\w\s.:/%&#=+\\\-@]+")
# annotations: "Keys must be alphanumeric in order to work with filters. Underscore is allowed. Other
# symbols and whitespace are not allowed" and values are "string, number, or Boolean" (segment
# documents, "Annotations").
ANNOTATION_KEY = re.compile(r"[A-Za-z0-9_]+")


def _number(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _entity_errors(entity, where, trace_id, parent):
    """Errors of one segment or subsegment; ``parent`` is the enclosing entity (None at the top)."""
    errors = []
    name = entity.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS or not NAME.fullmatch(name):
        errors.append(f"{where}: name {str(name)[:60]!r} is not 1-200 characters of the allowed set")
    if not isinstance(entity.get("id"), str) or not ENTITY_ID.fullmatch(entity["id"]):
        errors.append(f"{where}: id {entity.get('id')!r} is not 16 hex digits")
    # start_time, and "Specify either an end_time or in_progress" (PutTraceSegments).
    start, end = entity.get("start_time"), entity.get("end_time")
    if not _number(start) or start <= 0:
        errors.append(f"{where}: start_time {start!r} is not epoch seconds")
    if end is None:
        if entity.get("in_progress") is not True:
            errors.append(f"{where}: neither end_time nor in_progress")
    elif not _number(end) or (_number(start) and end < start):
        errors.append(f"{where}: end_time {end!r} is not epoch seconds at or after start_time")
    if "trace_id" in entity and entity["trace_id"] != trace_id:
        errors.append(f"{where}: trace_id {entity['trace_id']!r} differs from its document's {trace_id!r}")
    # parent_id of a subsegment: "the ID of the subsegment's parent" (segment documents, "Subsegments").
    if parent is not None and entity.get("parent_id", parent.get("id")) != parent.get("id"):
        errors.append(f"{where}: parent_id {entity.get('parent_id')!r} is not its parent's id {parent.get('id')!r}")
    if "parent_id" in entity and (
        not isinstance(entity["parent_id"], str) or not ENTITY_ID.fullmatch(entity["parent_id"])
    ):
        errors.append(f"{where}: parent_id {entity['parent_id']!r} is not 16 hex digits")
    annotations = entity.get("annotations", {})
    if not isinstance(annotations, dict):
        errors.append(f"{where}: annotations is not an object")
        annotations = {}
    for key, value in annotations.items():
        if not ANNOTATION_KEY.fullmatch(key):
            errors.append(f"{where}: annotation key {key[:60]!r} is not alphanumeric or _")
        if not (isinstance(value, str | bool) or _number(value)):
            errors.append(
                f"{where}: annotation {key[:60]!r} is a {type(value).__name__}, not a string, number or boolean"
            )
    for index, child in enumerate(entity.get("subsegments", ())):
        if not isinstance(child, dict):
            errors.append(f"{where}.subsegments[{index}] is not an object")
            continue
        errors.extend(_entity_errors(child, f"{where}.subsegments[{index}]", trace_id, entity))
    return errors


def document_errors(document, now=None, size=0):
    """Every rule of X-Ray's that ``document`` breaks (empty: X-Ray would take it).

    The ``parent_id`` of a subsegment sent on its own names an entity of another document of the
    same trace: ``XRayListener`` checks that across documents (``rejected``).
    """
    now = time.time() if now is None else now
    if not isinstance(document, dict):
        return ["the document is not a JSON object"]
    errors = []
    if size > MAX_DOCUMENT_BYTES:
        errors.append(f"{size} bytes, over X-Ray's 64 kB (64,000 bytes) per document")
    trace_id = document.get("trace_id")
    match = TRACE_ID.fullmatch(trace_id) if isinstance(trace_id, str) else None
    if match is None:
        errors.append(f"trace_id {str(trace_id)[:60]!r} is not 1-<8 hex>-<24 hex>")
    else:
        epoch = int(match.group(1), 16)
        if epoch < now - MAX_TRACE_AGE_SECONDS:
            errors.append(f"trace_id {trace_id} is dated {int(now - epoch) // 86400} days ago, over X-Ray's 30")
        elif epoch > now + MAX_TRACE_FUTURE_SECONDS:
            errors.append(f"trace_id {trace_id} is dated {int(epoch - now)} s in the future")
    if document.get("type") == "subsegment" and "parent_id" not in document:
        errors.append("a subsegment sent on its own has no parent_id")
    errors.extend(_entity_errors(document, document.get("type", "segment"), trace_id, None))
    return errors


def _strict_json(text):
    # NaN and Infinity are not JSON (RFC 8259); Python's parser would take them.
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


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
    return header, _strict_json(body)


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
        self._lock = threading.RLock()  # start, stop, mode
        # What was received: the reader takes this one, never _lock, so stop() can join it holding _lock.
        self._received = threading.Lock()
        self._documents = []
        self._malformed = []
        self._rejected = []
        self._echo = None
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
        with self._received:
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
        with self._received:
            return list(self._malformed)

    def rejected(self):
        """Everything X-Ray would refuse, as (document or bytes, [errors]): malformed datagrams, documents
        breaking a rule, and subsegments sent on their own whose parent_id names no entity of their trace."""
        with self._received:
            found = [(data, [error]) for data, error in self._malformed] + list(self._rejected)
            documents = list(self._documents)
        ids = {}
        for document in documents:
            ids.setdefault(document.get("trace_id"), set()).update(e.get("id") for e in flatten(document))
        for document in documents:
            if document.get("type") == "subsegment" and document.get("parent_id") not in ids[document.get("trace_id")]:
                found.append((document, [f"parent_id {document.get('parent_id')!r} names no entity of its trace"]))
        return found

    @property
    def rejected_count(self):
        """How many documents (or datagrams) X-Ray would refuse."""
        return len(self.rejected())

    @property
    def datagram_count(self):
        """Datagrams read, in any mode."""
        with self._received:
            return self._datagram_count

    def reset(self):
        """Forget everything received."""
        with self._received:
            self._documents.clear()
            self._malformed.clear()
            self._rejected.clear()
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
            with self._received:
                self._datagram_count += 1
                if self._mode == "drop":
                    continue
                try:
                    _, document = parse_datagram(data)
                except ValueError as error:
                    self._malformed.append((data, str(error)))
                    self._emit({"rejected": data.decode("utf-8", "replace")[:2000], "errors": [str(error)]})
                    continue
                errors = document_errors(document, size=len(data) - len(data.split(b"\n", 1)[0]) - 1)
                if errors:
                    self._rejected.append((document, errors))
                    self._emit({"rejected": document, "errors": errors})
                    continue
                self._documents.append(document)
                self._emit({"document": document})

    def _emit(self, line):
        if self._echo is not None:
            self._echo(line)


def _free_udp_port(host):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def main(argv=None):
    """Run the listener until SIGTERM/SIGINT, printing each document as a JSON line."""
    parser = argparse.ArgumentParser(description="An X-Ray daemon stand-in on loopback, as strict as X-Ray.")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    lock = threading.Lock()

    def echo(line):
        with lock:
            print(json.dumps(line), flush=True)

    with XRayListener(port=args.port) as listener:
        listener._echo = echo
        echo({"daemon_address": listener.daemon_address})
        while not done.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
