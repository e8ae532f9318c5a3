"""The request's trace context without FlaskInstrumentor's span work, while nothing records spans.

While no span processor is added and no meter provider is set, FlaskInstrumentor's span attributes,
status and metrics are built and thrown away. What remains of it is observable and is what this
layer does: the request's server span (started through the same SDK tracer, from the context the
global propagator extracts from the request headers, so the provider's sampler and id generator
decide as they would) is the current span while the request runs, and the global response
propagator writes `traceresponse` when the response starts. URLs excluded from the Flask
instrumentation are excluded here too.

The layer takes the instrumentor's places: its WSGI wrapper and its `before_request` and
`teardown_request` hooks at their positions in the app's hook lists, so every other hook (the
access log, the error handlers, Rollbar) sees the span exactly as it did. The instrumentor's own
hooks stay with the layer: a request that starts once spans are recorded (a span processor was
added later) runs through them, unchanged.

`self_check` serves probe requests through the instrumentor and through the layer and compares what
each lets the app see; telemetry/tracing.py installs the layer only when they agree.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, request
from flask.globals import request_ctx
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.propagators import get_global_response_propagator
from opentelemetry.instrumentation.wsgi import default_response_propagation_setter, wsgi_getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.util.http import parse_excluded_urls

from .propagation import caller_decision

# What the layer relies on of FlaskInstrumentor and Flask beyond their public API, and how it is checked
# (tests/test_request_context.py checks each against the installed libraries).
INSTRUMENTOR_INTERNALS = {
    "instrument_app adds one before_request, one teardown_request and a WSGI wrapper, nothing else": (
        "found by comparing the app's hook lists around the call; anything else keeps the instrumentor"
    ),
    "its request span: from the global propagator's extract when no span is current (SERVER), else a "
    "child (INTERNAL); current from its before_request until its teardown_request": "self_check at startup",
    "its traceresponse: the global response propagator when the response starts, unless excluded": "self_check",
    "its teardown ends the span only in the request context that started it": "self_check, tests",
    "flask.globals.request_ctx": "the current RequestContext (the instrumentor reads it too)",
}
# In the WSGI environ: the layer serving this request, and the request's span with its context tokens.
_LAYER_KEY = "cruddur.request_context.layer"
_STATE_KEY = "cruddur.request_context.state"
# The Flask hooks instrument_app may add; the layer takes the place of those it adds, and of no others.
_HOOK_REGISTRIES = (
    "before_request_funcs",
    "after_request_funcs",
    "teardown_request_funcs",
    "teardown_appcontext_funcs",
)


@dataclass(frozen=True)
class InstrumentorHooks:
    """What FlaskInstrumentor.instrument_app added to an app, found by comparing the app before and after."""

    before_request: Callable
    teardown_request: Callable
    wsgi_app: Callable  # its WSGI wrapper
    inner_wsgi_app: Callable  # the app's WSGI callable it wraps

    def in_place(self, app: Flask) -> bool:
        """Whether the hooks are still where instrument_app put them (nothing wrapped the app since)."""
        return (
            app.wsgi_app is self.wsgi_app
            and self.before_request in app.before_request_funcs.get(None, ())
            and self.teardown_request in app.teardown_request_funcs.get(None, ())
        )


def _registries(app: Flask) -> dict[str, dict]:
    found = {}
    for name in _HOOK_REGISTRIES:
        registry = getattr(app, name)  # by blueprint (None: the app), or one list for the app
        found[name] = (
            {key: list(funcs) for key, funcs in registry.items()}
            if isinstance(registry, dict)
            else {None: list(registry)}
        )
    return found


def instrument(app: Flask, instrument_app: Callable[[], None]) -> InstrumentorHooks | None:
    """Run `instrument_app()` (FlaskInstrumentor's) and return what it added.

    None when it added anything but one `before_request`, one `teardown_request` and a WSGI wrapper
    (another version of the instrumentation): the layer does not know how to stand in for it.
    """
    before, inner = _registries(app), app.wsgi_app
    instrument_app()
    after = _registries(app)
    added = {}
    for name in _HOOK_REGISTRIES:
        for key in before[name].keys() | after[name].keys():
            old, new = before[name].get(key, []), after[name].get(key, [])
            if new[: len(old)] != old:
                return None
            if new[len(old) :]:
                added[(name, key)] = new[len(old) :]
    befores, teardowns = added.pop(("before_request_funcs", None), []), added.pop(("teardown_request_funcs", None), [])
    if added or len(befores) != 1 or len(teardowns) != 1 or app.wsgi_app is inner:
        return None
    return InstrumentorHooks(befores[0], teardowns[0], app.wsgi_app, inner)


class RequestContextLayer:
    """The request's span context and `traceresponse`, in FlaskInstrumentor's places (see the module docstring).

    `provider` is the SDK provider; while `provider.spans_consumed` is true at the start of a
    request, the request goes through the instrumentor's own hooks.
    """

    def __init__(self, provider: TracerProvider, tracer: trace.Tracer, excluded_urls: str, hooks: InstrumentorHooks):
        self.provider = provider
        self.tracer = tracer
        # The instrumentation's own parsing of the setting; an empty one excludes nothing.
        self.excluded = parse_excluded_urls(excluded_urls) if excluded_urls else None
        self.hooks = hooks

    def install(self, app: Flask) -> None:
        """Take the instrumentor's places: its hooks at their positions, its WSGI wrapper."""
        for funcs, theirs, ours in (
            (app.before_request_funcs[None], self.hooks.before_request, self.before_request),
            (app.teardown_request_funcs[None], self.hooks.teardown_request, self.teardown_request),
        ):
            funcs[funcs.index(theirs)] = ours
        app.wsgi_app = self

    def _excluded(self) -> bool:
        return self.excluded is not None and self.excluded.url_disabled(request.url)

    def __call__(self, environ, start_response):
        """WSGI: the request through the layer, or through the instrumentor once spans are recorded."""
        if self.provider.spans_consumed:
            return self.hooks.wsgi_app(environ, start_response)
        environ[_LAYER_KEY] = self

        def answer(status, headers, *args):
            # The response starts before teardown: the request's span is still the current one.
            # With no span of ours (an excluded URL, or a hook before ours failed) the instrumentor's
            # test decides, and the propagator writes nothing unless some other span is current.
            if _STATE_KEY in environ or (request and not self._excluded()):
                propagator = get_global_response_propagator()
                if propagator:
                    propagator.inject(headers, setter=default_response_propagation_setter)
            return start_response(status, headers, *args)

        return self.hooks.inner_wsgi_app(environ, answer)

    def before_request(self) -> None:
        """Start the request's span from the caller's context and make it current."""
        ctx = request_ctx._get_current_object()
        environ = ctx.request.environ
        if environ.get(_LAYER_KEY) is not self:
            return self.hooks.before_request()
        if self._excluded():
            return None
        if trace.get_current_span() is trace.INVALID_SPAN:
            parent = propagate.extract(environ, getter=wsgi_getter)
            kind = trace.SpanKind.SERVER
        else:  # inside a span already (a request served within another's context)
            parent = context.get_current()
            kind = trace.SpanKind.INTERNAL
        # The app's samplers read the parent context and the trace id only (tracing.py admits no
        # other): the request attributes the instrumentor collects for its span would not change
        # a decision. The name is the instrumentor's for a route ("POST /api/activities").
        rule = ctx.request.url_rule
        method = environ.get("REQUEST_METHOD", "")
        span = self.tracer.start_span(f"{method} {rule.rule}" if rule else method, context=parent, kind=kind)
        # One attach for the instrumentor's two (the caller's context, then the span in it): the
        # same context is current while the request runs.
        token = context.attach(trace.set_span_in_context(span, parent))
        environ[_STATE_KEY] = (span, token, ctx)  # removed at teardown
        return None

    def teardown_request(self, exc: BaseException | None) -> None:
        """End the span and restore the context the request started with."""
        ctx = request_ctx._get_current_object()
        environ = ctx.request.environ
        if environ.get(_LAYER_KEY) is not self:
            return self.hooks.teardown_request(exc)
        state = environ.get(_STATE_KEY)
        # A copied request context (copy_current_request_context) tears down without the span.
        if state is None or state[2] is not ctx:
            return None
        del environ[_STATE_KEY]
        span, token, _ = state
        context.detach(token)
        span.end()
        return None


class _SequentialIds(IdGenerator):
    """The same ids, in the same order, for every provider: the probe's two apps are compared exactly."""

    def __init__(self):
        self.next = 0

    def generate_span_id(self) -> int:
        self.next += 1
        return self.next

    def generate_trace_id(self) -> int:
        self.next += 1
        return 0x5F000000_00000000_00000000_00000000 + self.next


PROBE_EXCLUDED_URLS = "/excluded"
PROBE_REQUESTS = (
    ("GET", "/probe", {}),
    (
        "GET",
        "/probe",
        {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tracestate": "probe=1,other=2",
        },
    ),
    ("POST", "/missing", {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"}),
    ("GET", "/probe", {"X-Amzn-Trace-Id": "Root=1-5f000000-00000000000000000000abcd;Parent=53995c3f42cd8ad8"}),
    ("GET", "/excluded", {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}),
)


def _seen() -> tuple:
    current = context.get_current()
    return trace.get_current_span(current).get_span_context(), caller_decision(current, None)


def _probe_app(install: Callable[[Flask], None]) -> tuple[Flask, list, list]:
    app = Flask("cruddur_request_context_probe")
    seen: list = []
    served: list = []  # by the layer itself, not through the instrumentor's hooks
    # Registered around the instrumentation's hooks, as the app's own are: outside it, then inside it.
    app.before_request(lambda: seen.append(("before, outside", _seen())))
    app.after_request(lambda response: seen.append(("after, last", _seen())) or response)
    app.teardown_request(lambda exc: seen.append(("teardown, last", _seen())))
    install(app)
    app.before_request(lambda: seen.append(("before, inside", _seen())))
    app.after_request(lambda response: seen.append(("after, first", _seen())) or response)
    app.teardown_request(lambda exc: seen.append(("teardown, first", _seen())))

    @app.route("/probe")
    @app.route("/excluded")
    def probe():
        seen.append(("view", _seen()))
        served.append(request.environ.get(_LAYER_KEY) is not None)
        return "probe"

    return app, seen, served


def _observe(install: Callable[[Flask], None]) -> tuple[list, int]:
    """What the probe app saw, and how many of the requests that reached the view the layer served."""
    app, seen, served = _probe_app(install)
    client = app.test_client()
    for method, path, headers in PROBE_REQUESTS:
        response = client.open(path, method=method, headers=headers)
        seen.append(("response", response.status_code, sorted(response.headers.items()), response.get_data()))
        seen.append(("after the request", _seen()))
    return seen, sum(served)


def self_check(
    new_provider: Callable[[IdGenerator], TracerProvider],
    instrument_app: Callable[[Flask, TracerProvider, str], None],
) -> bool:
    """Whether the layer lets an app see what FlaskInstrumentor does, on probe requests.

    `new_provider(id_generator)` builds a provider like the app's, with no span processor;
    `instrument_app(app, provider, excluded_urls)` instruments an app as the app does. Runs in a
    copy of the current context: nothing the probe requests set stays behind.
    """

    def instrumented(app: Flask, provider: TracerProvider) -> InstrumentorHooks | None:
        return instrument(app, lambda: instrument_app(app, provider, PROBE_EXCLUDED_URLS))

    def by_instrumentor(app: Flask) -> None:
        instrumented(app, new_provider(_SequentialIds()))

    installed = []

    def by_layer(app: Flask) -> None:
        provider = new_provider(_SequentialIds())
        hooks = instrumented(app, provider)
        if hooks is not None:  # else the instrumentor stays, and the probe finds no request served by the layer
            RequestContextLayer(provider, provider.get_tracer(__name__), PROBE_EXCLUDED_URLS, hooks).install(app)
            installed.append(hooks)

    def compare() -> bool:
        (theirs, _), (ours, served) = _observe(by_instrumentor), _observe(by_layer)
        views = sum(1 for entry in theirs if entry[0] == "view")
        return bool(installed) and views > 0 and served == views and ours == theirs

    return contextvars.copy_context().run(compare)
