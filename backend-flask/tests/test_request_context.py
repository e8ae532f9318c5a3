"""The request context layer lets the app see what FlaskInstrumentor does, and is used only when nothing records spans.

Two apps are built from one configuration, one served by FlaskInstrumentor (the layer's guard
forced closed) and one by the layer; their providers draw ids from the same seeded sequence, so
what each request lets the app see must be equal, id for id.
"""

from __future__ import annotations

import functools
import logging
import random
import string
import time
from dataclasses import dataclass, field

import pytest
from flask import Flask, copy_current_request_context, got_request_exception, request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import SpanKind

from cruddur import create_app
from cruddur.config import Config
from cruddur.logs import ACCESS_LOGGER, TraceContextFilter
from cruddur.telemetry.otel import request_context, tracing
from cruddur.telemetry.otel.propagation import RootAdoptingIdGenerator, caller_decision
from cruddur.telemetry.otel.sampling import build_sampler

EPOCH = int(time.time())  # trace ids the seeded generator starts: X-Ray-valid, like the app's
NEW_CRUD = {"message": "A crud from the request context tests.", "ttl": "1-day"}
INSTRUMENTOR_ENVIRON_PREFIX = "opentelemetry-flask."  # the keys FlaskInstrumentor puts in the environ


class _SeededXRayIds(AwsXRayIdGenerator):
    random: random.Random

    def generate_span_id(self) -> int:
        return self.random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return (EPOCH << 96) | (self.random.getrandbits(96) or 1)


class SeededIds(RootAdoptingIdGenerator, _SeededXRayIds):
    """The app's id generator (a pending X-Ray Root is adopted), its new ids from a seeded sequence."""

    def __init__(self):
        self.random = random.Random(0)

    def reseed(self, seed: int) -> None:
        self.random.seed(seed)


@dataclass
class Observed:
    """What the app saw during one request, in order: where, span context, caller decision, outgoing headers."""

    entries: list = field(default_factory=list)
    instrumentor_keys: list = field(default_factory=list)

    def now(self, where: str, **extra) -> None:
        current = context.get_current()
        outgoing: dict[str, str] = {}
        propagate.inject(outgoing, context=current)
        span_context = trace.get_current_span(current).get_span_context()
        self.entries.append((where, span_context, caller_decision(current, None), outgoing, extra))


class AccessLogObserver(logging.Handler):
    """Sees each access log line as the JSON line does: the ids TraceContextFilter adds, and the context."""

    def __init__(self):
        super().__init__()
        self.observed: Observed | None = None
        self.addFilter(TraceContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        if self.observed is not None:
            self.observed.now("access log", ids=(record.trace_id, record.span_id, record.xray_trace_id))


@pytest.fixture(scope="module")
def access_log():
    observer = AccessLogObserver()
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(observer)
    yield observer
    logger.removeHandler(observer)


@dataclass
class Served:
    """An app built for the comparison, with its id generator and what it observes."""

    app: Flask
    ids: SeededIds
    observed: Observed


def build(config: Config, layer: bool) -> Served:
    """The app for `config`, its provider drawing ids from a SeededIds; the layer or FlaskInstrumentor."""
    ids = SeededIds()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracing, "build_provider", functools.partial(tracing.build_provider, id_generator=ids))
        if not layer:
            patch.setattr(tracing, "context_layer_supported", lambda: False)
        app = create_app(config)
    assert app.extensions["cruddur.request_layer"] == ("context" if layer else "FlaskInstrumentor")
    observed = Observed()

    def seen_in_view(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            observed.now("view")
            observed.instrumentor_keys.extend(k for k in request.environ if k.startswith(INSTRUMENTOR_ENVIRON_PREFIX))
            return view(*args, **kwargs)

        return wrapper

    for endpoint, view in list(app.view_functions.items()):
        app.view_functions[endpoint] = seen_in_view(view)
    app.teardown_request(lambda exc: observed.now("teardown, first"))  # before the instrumentation's own
    got_request_exception.connect(lambda sender, **kw: observed.now("got_request_exception"), app, weak=False)
    return Served(app, ids, observed)


def serve(served: Served, access_log: AccessLogObserver, seed: int, method: str, path: str, headers: dict) -> tuple:
    """One request; everything about it the app and the caller can see of its trace."""
    served.ids.reseed(seed)
    served.observed.entries.clear()
    served.observed.instrumentor_keys.clear()
    access_log.observed = served.observed
    body = {"json": NEW_CRUD} if (method, path) == ("POST", "/api/activities") else {}
    try:
        response = served.app.test_client().open(path, method=method, headers=headers, **body)
    finally:
        access_log.observed = None
    return (
        response.status_code,
        response.headers.getlist("traceresponse"),
        response.headers.getlist("Access-Control-Expose-Headers"),
        response.headers.getlist("X-Amzn-Trace-Id"),
        list(served.observed.entries),
        trace.get_current_span().get_span_context(),  # after the request: nothing left attached
    )


def config_for(database_url: str, sampler: str, argument: str, excluded: str) -> Config:
    """A bare app's configuration, the sampler and excluded URLs read from the environment as in production."""
    environ = {
        "OTEL_TRACES_SAMPLER": sampler,
        "OTEL_TRACES_SAMPLER_ARG": argument,
        "OTEL_PYTHON_FLASK_EXCLUDED_URLS": excluded,
    }
    return Config.from_env(environ).replace(env="test", database_url=database_url, code_version="test", seed_data=True)


@pytest.fixture(scope="module")
def app_pairs(tmp_path_factory):
    """(FlaskInstrumentor app, layer app) per sampler setting and excluded URLs, built once."""
    pairs: dict[tuple, tuple[Served, Served]] = {}

    def pair(sampler: str, argument: str, excluded: str) -> tuple[Served, Served]:
        key = (sampler, argument, excluded)
        if key not in pairs:
            folder = tmp_path_factory.mktemp("pair")
            pairs[key] = tuple(
                build(config_for(f"sqlite:///{folder / f'{name}.db'}", *key), layer=name == "layer")
                for name in ("instrumentor", "layer")
            )
        return pairs[key]

    return pair


HEX = "0123456789abcdef"
PRINTABLE = string.ascii_letters + string.digits + string.punctuation + " "
trace_ids = st.text(HEX, min_size=32, max_size=32)
span_ids = st.text(HEX, min_size=16, max_size=16)
traceparents = st.one_of(
    st.none(),
    st.builds(lambda t, s, f: f"00-{t}-{s}-{f}", trace_ids, span_ids, st.sampled_from(["00", "01", "03", "ff", "0x"])),
    st.sampled_from(
        [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # invalid trace id
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # invalid span id
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future",  # a future version
            "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case
            "",
        ]
    ),
    st.text(PRINTABLE, max_size=70),
)
tracestates = st.one_of(
    st.none(),
    st.sampled_from(
        ["vendor=v1", "a=1,b=2", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", "bad state", "=,=", "k=" + "v" * 300]
    ),
    st.text(PRINTABLE, max_size=40),
)
xray_roots = st.one_of(
    st.builds(lambda rest: f"1-{EPOCH:08x}-{rest}", st.text(HEX, min_size=24, max_size=24)),
    st.builds(lambda rest: f"1-5f000000-{rest}", st.text(HEX, min_size=24, max_size=24)),  # older than X-Ray keeps
)


@st.composite
def xray_headers(draw):
    parts = [f"Root={draw(xray_roots)}"]
    if draw(st.booleans()):
        parts.append(f"Parent={draw(span_ids)}")
    sampled = draw(st.sampled_from([None, "1", "0", "?", "x"]))
    if sampled is not None:
        parts.append(f"Sampled={sampled}")
    parts = draw(st.permutations(parts))
    return ";".join(parts)


@st.composite
def request_headers(draw) -> dict:
    headers = {}
    for name, values in (
        ("traceparent", traceparents),
        ("tracestate", tracestates),
        ("X-Amzn-Trace-Id", st.one_of(st.none(), xray_headers(), st.text(PRINTABLE, max_size=80))),
        ("Origin", st.sampled_from([None, "http://localhost:3000"])),
    ):
        value = draw(values)
        if value is not None:
            headers[name] = value
    return headers


ROUTES = [
    ("GET", "/api/activities/home"),
    ("POST", "/api/activities"),
    ("GET", "/api/health-check"),
    ("GET", "/api/activities/@andrewbrown"),
    ("GET", "/api/activities/@nobody-here"),  # 404 from the service
    ("GET", "/api/no-such-route"),  # 404 from routing
    ("GET", "/rollbar/test/exception"),  # raises: 500
    ("GET", "/api/activities/search?term="),  # 422
]
requests = st.one_of(
    st.sampled_from(ROUTES),
    st.tuples(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD"]), st.sampled_from([p for _, p in ROUTES])
    ),
)
sampler_settings = st.tuples(
    st.sampled_from(["", "always_on", "always_off", "traceidratio", "parentbased_traceidratio", "bogus"]),
    st.sampled_from(["", "0.5", "0.25", "2"]),
    st.sampled_from(["", "health-check,@nobody"]),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(setting=sampler_settings, call=requests, headers=request_headers(), seed=st.integers(0, 2**64))
def test_the_layer_lets_the_app_see_what_flask_instrumentor_does(app_pairs, access_log, setting, call, headers, seed):
    """The property: for any headers, method, path and sampler, the same trace context everywhere, id for id."""
    by_instrumentor, by_layer = app_pairs(*setting)
    theirs = serve(by_instrumentor, access_log, seed, *call, headers)
    ours = serve(by_layer, access_log, seed, *call, headers)
    assert ours == theirs
    # Each app was served the way it says: the instrumentor's request keys are in one environ only.
    if any(entry[0] == "view" for entry in theirs[4]):
        assert by_instrumentor.observed.instrumentor_keys and not by_layer.observed.instrumentor_keys
    assert theirs[5] == trace.INVALID_SPAN_CONTEXT


def test_the_comparison_sees_a_difference(app_pairs, access_log):
    """The harness can fail: another seed gives other span ids, and the comparison notices."""
    by_instrumentor, by_layer = app_pairs("", "", "")
    theirs = serve(by_instrumentor, access_log, 1, "GET", "/api/activities/home", {})
    ours = serve(by_layer, access_log, 2, "GET", "/api/activities/home", {})
    assert theirs[1] and ours[1] and theirs != ours
    entries = {entry[0] for entry in theirs[4]}
    assert {"view", "access log", "teardown, first"} <= entries


def test_error_hooks_see_the_request_span(app_pairs, access_log):
    """An exception that becomes a 500: Rollbar's signal, the access log and teardown all see the span."""
    _, by_layer = app_pairs("", "", "")
    status, traceresponse, _, _, entries, _ = serve(
        by_layer, access_log, 7, "GET", "/rollbar/test/exception", {"traceparent": f"00-{'ab' * 16}-{'cd' * 8}-01"}
    )
    assert status == 500
    _, trace_id, span_id, flags = traceresponse[0].split("-")
    assert (trace_id, flags) == ("ab" * 16, "01")
    wheres = [where for where, *_ in entries]
    assert wheres == ["view", "got_request_exception", "access log", "teardown, first"]
    for _, span_context, _, outgoing, _ in entries:
        assert (format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")) == (trace_id, span_id)
        assert outgoing["traceparent"] == f"00-{trace_id}-{span_id}-01"


def test_excluded_urls_get_no_trace_context(app_pairs, access_log):
    _, by_layer = app_pairs("", "", "health-check,@nobody")
    status, traceresponse, _, _, entries, _ = serve(by_layer, access_log, 3, "GET", "/api/health-check", {})
    assert status == 200 and traceresponse == []
    assert [extra["ids"] for where, *_, extra in entries if where == "access log"] == [(None, None, None)]
    assert serve(by_layer, access_log, 3, "GET", "/api/activities/home", {})[1]


def test_a_copied_request_context_leaves_the_request_span_current(tmp_path):
    """copy_current_request_context tears down a copy: the span stays until the request's own teardown."""
    results = []
    for layer in (False, True):
        served = build(config_for(f"sqlite:///{tmp_path / f'{layer}.db'}", "", "", ""), layer=layer)

        def copied():
            @copy_current_request_context
            def inside():
                return trace.get_current_span().get_span_context()

            during = inside()
            return {
                "during": format(during.span_id, "016x"),
                "after": format(trace.get_current_span().get_span_context().span_id, "016x"),
            }

        served.app.add_url_rule("/api/copied", view_func=copied)
        served.ids.reseed(5)
        response = served.app.test_client().get("/api/copied")
        span_id = response.headers["traceresponse"].split("-")[2]
        assert response.json == {"during": span_id, "after": span_id}
        results.append((response.json, response.headers["traceresponse"]))
    assert results[0] == results[1]


def test_a_span_processor_added_later_gets_flask_instrumentor_spans(tmp_path):
    """Requests that start after a processor is added go through the instrumentor: full server spans."""
    served = build(config_for(f"sqlite:///{tmp_path / 'later.db'}", "", "", ""), layer=True)
    client = served.app.test_client()
    assert client.get("/api/activities/home").status_code == 200
    exporter = InMemorySpanExporter()
    served.app.extensions["cruddur.tracer_provider"].add_span_processor(SimpleSpanProcessor(exporter))
    response = client.get("/api/activities/home")
    _, trace_id, span_id, _ = response.headers["traceresponse"].split("-")
    servers = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 1
    server = servers[0]
    assert (format(server.context.trace_id, "032x"), format(server.context.span_id, "016x")) == (trace_id, span_id)
    assert server.name == "GET /api/activities/home"
    assert server.attributes["http.route"] == "/api/activities/home"
    assert server.attributes["http.response.status_code"] == 200
    assert server.instrumentation_scope.name == "opentelemetry.instrumentation.flask"


# The guard


def bare(tmp_path, **changes) -> Config:
    return config_for(f"sqlite:///{tmp_path / 'guard.db'}", "", "", "").replace(**changes)


def test_a_bare_app_gets_the_layer_in_the_instrumentor_s_places(tmp_path):
    instrumented = build(bare(tmp_path), layer=False).app
    layered = build(config_for(f"sqlite:///{tmp_path / 'other.db'}", "", "", ""), layer=True).app
    hooks = layered.extensions[tracing.FLASK_HOOKS]
    assert not hooks.in_place(layered)  # replaced

    def positions(app, name):
        return [getattr(f, "__qualname__", "") for f in getattr(app, name)[None]]

    for name in ("before_request_funcs", "teardown_request_funcs"):
        theirs, ours = positions(instrumented, name), positions(layered, name)
        assert len(theirs) == len(ours)
        differ = [i for i, (a, b) in enumerate(zip(theirs, ours, strict=True)) if a != b]
        assert len(differ) == 1 and ours[differ[0]].startswith("RequestContextLayer.")
        assert theirs[differ[0]].startswith("_wrapped_")


def test_a_span_processor_keeps_flask_instrumentor(tmp_path, capsys):
    app = create_app(bare(tmp_path, traces_exporter="console"))
    try:
        assert app.extensions["cruddur.request_layer"] == "FlaskInstrumentor"
        hooks = app.extensions[tracing.FLASK_HOOKS]
        assert hooks.before_request in app.before_request_funcs[None]
        assert hooks.teardown_request in app.teardown_request_funcs[None]
    finally:
        app.extensions["cruddur.tracer_provider"].shutdown()


def test_x_ray_s_span_processor_added_after_tracing_keeps_flask_instrumentor(tmp_path, xray_listener):
    app = create_app(bare(tmp_path, xray_daemon_address=xray_listener.daemon_address))
    assert app.extensions["cruddur.request_layer"] == "FlaskInstrumentor"
    response = app.test_client().get("/api/activities/home")
    assert response.status_code == 200 and response.headers["X-Amzn-Trace-Id"]


def test_request_metrics_keep_flask_instrumentor(tmp_path, otlp_receiver):
    app = create_app(bare(tmp_path, otlp_metrics_endpoint=f"{otlp_receiver.endpoint}/v1/metrics"))
    try:
        assert app.extensions.get("cruddur.meter_provider") is not None
        assert not app.extensions["cruddur.tracer_provider"].spans_consumed
        assert app.extensions["cruddur.request_layer"] == "FlaskInstrumentor"
    finally:
        app.extensions["cruddur.meter_provider"].shutdown(timeout_millis=5_000)


def test_a_failed_self_check_keeps_flask_instrumentor(tmp_path, monkeypatch):
    monkeypatch.setattr(tracing, "context_layer_supported", lambda: False)
    app = create_app(bare(tmp_path))
    assert app.extensions["cruddur.request_layer"] == "FlaskInstrumentor"


def test_a_sampler_that_may_read_attributes_keeps_flask_instrumentor(tmp_path):
    app = Flask(__name__)
    app.extensions["cruddur.config"] = bare(tmp_path)
    app.extensions["cruddur.integrations"] = {}
    tracing.init_app(app, provider=tracing.LeanTracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False))
    assert not tracing.instrument_requests(app)
    assert app.extensions["cruddur.request_layer"] == "FlaskInstrumentor"


def test_an_app_wrapped_after_tracing_keeps_flask_instrumentor(tmp_path):
    app = Flask(__name__)
    app.extensions["cruddur.config"] = bare(tmp_path)
    app.extensions["cruddur.integrations"] = {}
    tracing.init_app(app)
    inner = app.wsgi_app
    app.wsgi_app = lambda environ, start_response: inner(environ, start_response)
    assert not tracing.instrument_requests(app)
    assert app.extensions["cruddur.request_layer"] == "FlaskInstrumentor"


def test_the_self_check_passes_on_these_libraries():
    assert tracing.context_layer_supported()


def probe_provider(ids):
    return tracing.LeanTracerProvider(id_generator=ids, sampler=build_sampler("", ""), shutdown_on_exit=False)


def test_the_self_check_fails_when_the_instrumentor_behaves_otherwise():
    """Probes that must disagree: other excluded URLs, spans recorded, hooks the layer cannot stand in for."""
    assert request_context.self_check(probe_provider, tracing._instrument_flask)

    def excluding_nothing(app, provider, excluded_urls):
        tracing._instrument_flask(app, provider, "")

    assert not request_context.self_check(probe_provider, excluding_nothing)

    def recording(ids):
        provider = probe_provider(ids)
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        return provider

    assert not request_context.self_check(recording, tracing._instrument_flask)

    def with_another_hook(app, provider, excluded_urls):
        tracing._instrument_flask(app, provider, excluded_urls)
        app.after_request(lambda response: response)

    assert not request_context.self_check(probe_provider, with_another_hook)


def test_the_instrumentor_behaviour_the_layer_relies_on():
    """Each entry of INSTRUMENTOR_INTERNALS, against the installed FlaskInstrumentor and Flask."""
    from flask.globals import request_ctx

    app = Flask(__name__)
    inner = app.wsgi_app
    hooks = request_context.instrument(app, lambda: tracing._instrument_flask(app, probe_provider(SeededIds()), ""))
    assert hooks is not None and hooks.in_place(app) and hooks.inner_wsgi_app == inner
    assert request_context.instrument(Flask(__name__), lambda: None) is None
    assert tracing.context_layer_supported()  # span, traceresponse and teardown, by the probe
    with app.test_request_context("/"):
        assert request_ctx._get_current_object().request is request._get_current_object()
    assert len(request_context.INSTRUMENTOR_INTERNALS) == 5
