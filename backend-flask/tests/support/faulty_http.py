"""A small threaded HTTP server on loopback whose failure mode can be switched at runtime.

The vendor stand-ins (OTLP, Rollbar, a proxy in front of moto) subclass ``FaultyHTTPServer`` and
override ``handle``; the base class owns sockets, threads, fault modes and request counting.

Modes (``server.mode = "..."`` at any time, from any thread):

- ``ok``: answer through ``handle``.
- ``refuse``: nothing listens; the port stays reserved by a bound, non-listening socket, so a client
  gets ECONNREFUSED and the same URL works again once the mode changes back.
- ``blackhole``: connections are accepted and requests read, but never answered (until the client
  gives up or the server stops); ``stop()`` never waits for them.
- ``slow``: wait ``delay`` seconds, then answer through ``handle``.
- ``status500`` / ``status429``: answer with that status (429 carries ``Retry-After``) and keep nothing.
"""

import contextlib
import gzip
import http.client
import json
import select
import socket
import sys
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "refuse", "blackhole", "slow", "status500", "status429")
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the server saw it; ``body`` is already decompressed."""

    method: str
    path: str
    headers: dict
    body: bytes
    mode: str
    received_at: float
    raw_body: bytes = b""  # as it came over the wire (still compressed): what a signature covers

    def json(self):
        """Return the body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Response:
    """What ``handle`` returns."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, status, payload, headers=None):
        """Build a JSON response."""
        return cls(status, json.dumps(payload).encode(), "application/json", dict(headers or {}))


class BadRequest(Exception):
    """Raised by a handler (or body decoding) to answer 400 with this message."""


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that never joins handler threads and can cut every open connection."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, handler, owner):
        self.owner = owner
        self._connections = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        """Remember the connection so it can be cut when the server goes down."""
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        """Forget the connection once its handler is done."""
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        """A client that resets its idle keep-alive connection is no error of the server; others print."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def cut_connections(self):
        """Shut down every open connection (idle keep-alive ones included)."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cruddur-stand-in/1"
    # TCP_NODELAY, as production HTTP servers set it: the body follows the headers in a second write,
    # which Nagle's algorithm would hold until the client's delayed ACK (40 ms on Linux). A client
    # sending one small request at a time (Sentry's transport, one envelope a transaction) then
    # managed ~23 requests a second.
    disable_nagle_algorithm = True

    def log_message(self, format, *args):
        """Stay quiet: tests read the server's accessors, not its access log."""

    def _dispatch(self):
        self.server.owner._serve(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


def _read_body(handler):
    """Read the request body (Content-Length or chunked); return it raw and with Content-Encoding undone."""
    headers = handler.headers
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        chunks = []
        while True:
            size_line = handler.rfile.readline(1024)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline(1024)
        raw = b"".join(chunks)
    else:
        length = int(headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
    encoding = headers.get("Content-Encoding", "").strip().lower()
    try:
        if encoding == "gzip":
            return raw, gzip.decompress(raw)
        if encoding == "deflate":
            return raw, zlib.decompress(raw)
    except (OSError, zlib.error, EOFError) as error:
        raise BadRequest(f"cannot decode {encoding} body: {error}") from error
    return raw, raw


class FaultyHTTPServer:
    """Threaded loopback HTTP server with a switchable fault ``mode``; subclass and override ``handle``."""

    name = "http"

    def __init__(self, port=0, mode="ok", delay=2.0, retry_after=30, host=LOOPBACK, keep_requests=10_000):
        """Configure (nothing is bound until ``start``)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        self.host = host
        self.delay = delay
        self.retry_after = retry_after
        self._port = port
        self._mode = mode
        self._lock = threading.RLock()
        self._server = None
        self._thread = None
        self._placeholder = None
        self._stopping = threading.Event()
        self._started = False
        self._requests = deque(maxlen=keep_requests)
        self._request_count = 0
        self._counts_by_mode = {}

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self):
        """Bind the port (or reserve it, in ``refuse`` mode) and start serving; return self."""
        with self._lock:
            if self._started:
                return self
            self._stopping.clear()
            if self._mode == "refuse":
                self._reserve_port()
            else:
                self._go_up()
            self._started = True
        return self

    def stop(self):
        """Stop serving, cut open connections and release the port; safe to call twice."""
        with self._lock:
            self._stopping.set()
            self._go_down()
            self._release_placeholder()
            self._started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- mode ----------------------------------------------------------------------------------

    @property
    def mode(self):
        """The current fault mode."""
        return self._mode

    @mode.setter
    def mode(self, mode):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        with self._lock:
            previous, self._mode = self._mode, mode
            if not self._started or previous == mode:
                return
            if mode == "refuse":
                self._go_down()
                self._reserve_port()
            elif previous == "refuse":
                self._release_placeholder()
                self._go_up()

    # -- addresses -----------------------------------------------------------------------------

    @property
    def port(self):
        """The bound port (known after ``start``)."""
        return self._port

    @property
    def url(self):
        """Base URL, without a trailing slash."""
        return f"http://{self.host}:{self._port}"

    # -- accessors -----------------------------------------------------------------------------

    @property
    def request_count(self):
        """How many requests arrived, in any mode."""
        with self._lock:
            return self._request_count

    def counts_by_mode(self):
        """Requests received per mode, e.g. ``{"ok": 3, "blackhole": 1}``."""
        with self._lock:
            return dict(self._counts_by_mode)

    def requests(self):
        """The received requests (the last ``keep_requests``), oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self):
        """Forget everything received so far."""
        with self._lock:
            self._requests.clear()
            self._request_count = 0
            self._counts_by_mode = {}
            self.reset_data()

    def reset_data(self):
        """Subclasses clear what they stored (called under the lock)."""

    # -- to override ---------------------------------------------------------------------------

    def handle(self, request):
        """Answer one request in ``ok``/``slow`` mode; the base answers 404."""
        return Response.json(404, {"error": "not found", "path": request.path})

    def fault_response(self, status):
        """The body a failing vendor would send for ``status``."""
        return Response.json(status, {"error": "injected fault", "status": status})

    # -- internals -----------------------------------------------------------------------------

    def _go_up(self):
        self._server = _Server((self.host, self._port), _Handler, self)
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.name}-{self._port}",
            daemon=True,
        )
        self._thread.start()

    def _go_down(self):
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut_connections()
        thread.join(timeout=5)

    def _reserve_port(self):
        """Hold the port with a bound socket that never listens: connecting to it is refused."""
        placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        placeholder.bind((self.host, self._port))
        self._port = placeholder.getsockname()[1]
        self._placeholder = placeholder

    def _release_placeholder(self):
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def _record(self, request):
        with self._lock:
            self._request_count += 1
            self._counts_by_mode[request.mode] = self._counts_by_mode.get(request.mode, 0) + 1
            self._requests.append(request)

    def _hold(self, conn):
        """Keep a blackholed connection open, unanswered, until the client leaves or we stop."""
        while not self._stopping.is_set() and self._server is not None:
            try:
                readable, _, _ = select.select([conn], [], [], 0.1)
                if readable and conn.recv(1, socket.MSG_PEEK) == b"":
                    return
                if readable:
                    time.sleep(0.1)
            except (OSError, ValueError):
                return

    def _serve(self, handler):
        mode = self._mode
        if mode == "refuse":
            handler.close_connection = True
            return
        try:
            raw_body, body = _read_body(handler)
        except (BadRequest, ValueError) as error:
            self._write(handler, Response.json(400, {"error": str(error)}))
            handler.close_connection = True
            return
        request = ReceivedRequest(
            method=handler.command,
            path=handler.path,
            headers={name.lower(): value for name, value in handler.headers.items()},
            body=body,
            mode=mode,
            received_at=time.time(),
            raw_body=raw_body,
        )
        self._record(request)
        if mode == "blackhole":
            self._hold(handler.connection)
            handler.close_connection = True
            return
        if mode == "slow" and self._stopping.wait(self.delay):
            handler.close_connection = True
            return
        if request.method == "OPTIONS":
            response = Response(204, b"", "text/plain", self._preflight_headers(request))
        elif mode == "status500":
            response = self.fault_response(500)
        elif mode == "status429":
            response = self.fault_response(429)
            response.headers.setdefault("Retry-After", str(self.retry_after))
        else:
            try:
                response = self.handle(request)
            except BadRequest as error:
                response = Response.json(400, {"error": str(error)})
        self._write(handler, response)

    @staticmethod
    def _preflight_headers(request):
        return {
            "Access-Control-Allow-Methods": "GET, POST, PUT, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("access-control-request-headers", "*"),
            "Access-Control-Max-Age": "600",
        }

    @staticmethod
    def _write(handler, response):
        try:
            handler.send_response(response.status)
            handler.send_header("Content-Type", response.content_type)
            handler.send_header("Content-Length", str(len(response.body)))
            # Browsers (the frontend's OTLP exporter) post cross-origin.
            handler.send_header("Access-Control-Allow-Origin", "*")
            for name, value in response.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(response.body)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length", "te", "upgrade"}


class ForwardingServer(FaultyHTTPServer):
    """A fault-injecting proxy: in ``ok``/``slow`` mode it forwards each request to ``upstream``.

    Used to put fault modes in front of a real emulator (moto) that cannot fail on demand.
    """

    name = "forward"

    def __init__(self, upstream, timeout=30, **kwargs):
        """``upstream`` is a base URL such as ``http://127.0.0.1:5000``."""
        super().__init__(**kwargs)
        host_port = upstream.split("://", 1)[-1].rstrip("/")
        host, _, port = host_port.partition(":")
        self.upstream = (host, int(port or 80))
        self.timeout = timeout

    def handle(self, request):
        """Replay the request upstream (keeping Host, which AWS signatures cover) and relay the answer."""
        headers = {k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(*self.upstream, timeout=self.timeout)
        try:
            conn.request(request.method, request.path, body=request.body, headers=headers)
            upstream = conn.getresponse()
            body = upstream.read()
            relayed = {k: v for k, v in upstream.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-type"}}
            return Response(upstream.status, body, upstream.getheader("Content-Type", "text/plain"), relayed)
        except OSError as error:
            return Response.json(502, {"error": f"upstream unreachable: {error}"})
        finally:
            conn.close()


def closed_port(host=LOOPBACK):
    """A TCP port on which nothing listens right now (for 'no endpoint at all' cases)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
