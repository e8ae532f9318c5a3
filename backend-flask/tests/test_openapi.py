"""openapi.yaml stays true: every route is documented, every documented operation and status is real,
real responses validate against the schemas, and schemathesis finds no 5xx or schema violation."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path

import jsonschema
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate as validate_spec
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from cruddur import create_app
from tests.support.browser_exports import export_json, export_protobuf
from tests.support.cognito import bearer, signed_in_config, tokens

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "openapi.yaml"
DOCUMENT = yaml.safe_load(OPENAPI_PATH.read_text())
DOCUMENT_URI = "urn:cruddur:openapi"
# Methods every route answers without being an operation: HEAD for GET (Flask), OPTIONS (CORS preflight).
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
FRONTEND = "http://localhost:3000"
TRACES = "/api/telemetry/v1/traces"
ONE_MIB = 1024 * 1024


# -- the document ---------------------------------------------------------------------------------
def resolve(node: dict) -> dict:
    """Follow a local `$ref` (e.g. to components/responses)."""
    while "$ref" in node:
        pointer = node["$ref"].removeprefix("#/").split("/")
        node = DOCUMENT
        for part in pointer:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def operations() -> dict[tuple[str, str], dict]:
    """{(METHOD, path template): operation} of the document."""
    return {
        (method.upper(), path): operation
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


REGISTRY = Registry().with_resource(DOCUMENT_URI, Resource.from_contents(DOCUMENT, DRAFT202012))


def pointer_to(*parts: str) -> str:
    """A JSON pointer into the document."""
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def validate_response(method: str, template: str, response) -> None:
    """Assert that a real response is documented for this operation and matches its schema."""
    operation = operations()[(method, template)]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {template} answered undocumented {status}"
    documented = resolve(operation["responses"][status])
    content = documented.get("content")
    if not content:
        assert not response.data, f"{method} {template} {status} should have no body"
        return
    assert response.mimetype in content, (method, template, status, response.mimetype)
    schema = content[response.mimetype].get("schema")
    body = response.get_json() if response.mimetype == "application/json" else response.get_data(as_text=True)
    response_ref = operation["responses"][status].get("$ref")
    if response_ref:  # validate through the shared response so its $refs resolve in the document
        where = response_ref + "/" + "/".join(["content", response.mimetype.replace("/", "~1"), "schema"])
    else:
        where = pointer_to("paths", template, method.lower(), "responses", status, "content", response.mimetype)
        where += "/schema"
    validator = jsonschema.Draft202012Validator(
        {"$ref": DOCUMENT_URI + where}, registry=REGISTRY, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    assert schema is not None
    assert not errors, f"{method} {template} {status}: " + "; ".join(
        f"{list(e.absolute_path)}: {e.message[:300]}" for e in errors[:5]
    )
    for name, header in documented.get("headers", {}).items():
        if resolve(header).get("required"):
            assert name in response.headers, (method, template, status, name)


def test_document_is_valid_openapi():
    validate_spec(DOCUMENT)
    assert DOCUMENT["openapi"].startswith("3.")


def flask_routes(app) -> dict[tuple[str, str], str]:
    """{(METHOD, OpenAPI path template): endpoint} of the app, without HEAD and OPTIONS."""
    routes = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue  # Flask's built-in static route; Cruddur ships no static files
        template = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - IMPLICIT_METHODS:
            routes[(method, template)] = rule.endpoint
    return routes


def test_every_route_is_documented_and_every_operation_is_a_route(app):
    routes = flask_routes(app)
    documented = set(operations())
    assert set(routes) - documented == set(), "routes missing from openapi.yaml"
    assert documented - set(routes) == set(), "openapi.yaml documents operations the app does not have"


def test_path_parameters_match_the_routes_converters(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        template = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        item = DOCUMENT["paths"][template]
        for method in rule.methods - IMPLICIT_METHODS:
            params = {
                p["name"]: p
                for p in map(resolve, item[method.lower()].get("parameters", []) + item.get("parameters", []))
                if p["in"] == "path"
            }
            assert set(params) == set(rule.arguments), (template, method)
            for name, converter in rule._converters.items():
                if type(converter).__name__ == "UUIDConverter":
                    assert params[name]["schema"]["format"] == "uuid", template


def test_every_operation_lists_its_error_statuses():
    for (method, path), operation in operations().items():
        responses = operation["responses"]
        assert "500" in responses, (method, path)
        if "requestBody" in operation:
            assert {"413", "415"} <= set(responses), (method, path)
        if "{" in path:
            assert "404" in responses, (method, path)
        for status, response in responses.items():
            for media, content in resolve(response).get("content", {}).items():
                if status.startswith(("4", "5")):
                    assert media == "application/json", (method, path, status)
                    assert content["schema"].get("$ref", "").startswith("#/components/schemas/"), (path, status)


# -- real responses against the schemas ----------------------------------------------------------
class Recorder:
    """Sends requests through the test client, validates each response, and remembers what it saw."""

    def __init__(self, client):
        self.client = client
        self.seen: set[tuple[str, str, str]] = set()

    def __call__(self, method: str, template: str, path: str | None = None, **kwargs):
        response = self.client.open(path or template, method=method, **kwargs)
        validate_response(method, template, response)
        assert response.headers["traceresponse"].startswith("00-"), (method, path)
        self.seen.add((method, template, str(response.status_code)))
        return response


def exercise_every_operation(send: Recorder) -> None:
    """Drive every documented status of every operation that a client can cause."""
    send("GET", "/api/health-check")
    assert "cruddur_integration_events_total" in send("GET", "/metrics").get_data(as_text=True)
    home = send("GET", "/api/activities/home").json
    assert home
    assert send("GET", "/api/activities/notifications").json
    assert send("GET", "/api/activities/@{handle}", "/api/activities/@worf").json
    send("GET", "/api/activities/@{handle}", "/api/activities/@nobody-here")
    assert send("GET", "/api/activities/search", "/api/activities/search?term=serverless").json
    send("GET", "/api/activities/search", "/api/activities/search?term=%20")

    crud = send("POST", "/api/activities", json={"message": "<b>openapi</b> '; --", "ttl": "1-hour"}).json
    send("POST", "/api/activities", json={"message": "", "ttl": "forever"})
    send("POST", "/api/activities", data="{", content_type="application/json")
    send("POST", "/api/activities", data="message=hi", content_type="text/plain")
    send("POST", "/api/activities", data="x" * (ONE_MIB + 1), content_type="application/json")

    show, reply_path = "/api/activities/{activity_uuid}", "/api/activities/{activity_uuid}/reply"
    reply = send("POST", reply_path, f"/api/activities/{crud['uuid']}/reply", json={"message": "a reply"}).json
    send("POST", reply_path, f"/api/activities/{uuid.uuid4()}/reply", json={"message": "lost"})
    send("POST", reply_path, f"/api/activities/{crud['uuid']}/reply", json={"message": "y" * 281})
    send("POST", reply_path, f"/api/activities/{crud['uuid']}/reply", json={"message": 7})
    send("POST", reply_path, f"/api/activities/{crud['uuid']}/reply", data="{}", content_type="text/xml")
    send(
        "POST",
        reply_path,
        f"/api/activities/{crud['uuid']}/reply",
        data="x" * (ONE_MIB + 1),
        content_type="application/json",
    )
    assert send("GET", show, f"/api/activities/{crud['uuid']}").json["replies_count"] == 1
    assert send("GET", show, f"/api/activities/{reply['uuid']}").json["reply_to_activity_uuid"] == crud["uuid"]
    send("GET", show, f"/api/activities/{uuid.uuid4()}")

    assert send("GET", "/api/message_groups").json
    assert send("GET", "/api/messages/@{handle}", "/api/messages/@bayko").json
    send("GET", "/api/messages/@{handle}", "/api/messages/@nobody-here")
    send("POST", "/api/messages", json={"message": "Qapla'", "user_receiver_handle": "worf"})
    send("POST", "/api/messages", json={"message": "hi", "user_receiver_handle": "nobody-here"})
    send("POST", "/api/messages", json={"message": " ", "user_receiver_handle": "worf"})
    send("POST", "/api/messages", json={"message": "hi", "user_receiver_handle": ["worf"]})
    send("POST", "/api/messages", data="hi", content_type="application/x-www-form-urlencoded")
    send("POST", "/api/messages", data="x" * (ONE_MIB + 1), content_type="application/json")

    origin = {"Origin": FRONTEND}
    send("POST", TRACES, data=export_protobuf(), content_type="application/x-protobuf", headers=origin)
    send("POST", TRACES, data=export_json(), content_type="application/json", headers=origin)
    send("POST", TRACES, data=json.dumps({"resourceSpans": []}), content_type="application/json", headers=origin)
    refused = send("POST", TRACES, data=b"\x0a\x00", content_type="application/x-protobuf", headers=origin)
    assert refused.json["errors"] == ["otlp_service_not_allowed"]
    gzip = {**origin, "Content-Encoding": "gzip"}
    send("POST", TRACES, data=export_protobuf(), content_type="application/x-protobuf", headers=gzip)
    send("POST", TRACES, data=b"\x0a\x00", content_type="application/x-protobuf", headers={"Origin": "http://evil"})
    send("POST", TRACES, data=b"{}", content_type="text/plain", headers=origin)
    send("POST", TRACES, data=b"\0" * (512 * 1024 + 1), content_type="application/x-protobuf", headers=origin)
    for _ in range(40):  # the burst is 20 exports: the limiter answers 429 long before 40
        if send("POST", TRACES, data=b"", content_type="application/x-protobuf", headers=origin).status_code == 429:
            break

    assert send("GET", "/rollbar/test").get_data(as_text=True) == "Hello World!"
    send("GET", "/rollbar/test/exception")


def test_real_responses_validate_and_every_documented_status_happens(app, config):
    send = Recorder(app.test_client())
    exercise_every_operation(send)
    production = Recorder(create_app(config.replace(env="production")).test_client())
    production("GET", "/rollbar/test")
    production("GET", "/rollbar/test/exception")
    # Production without Cognito: everything that needs a user is 401 (the token cases: test_auth.py).
    production("GET", "/api/activities/notifications")
    production("POST", "/api/activities", json={"message": "hi", "ttl": "1-hour"})
    production("POST", "/api/activities/{activity_uuid}/reply", f"/api/activities/{uuid.uuid4()}/reply", json={})
    production("GET", "/api/message_groups")
    production("GET", "/api/messages/@{handle}", "/api/messages/@bayko")
    production("POST", "/api/messages", json={"message": "hi", "user_receiver_handle": "worf"})
    seen = send.seen | production.seen

    documented = {
        (method, path, status)
        for (method, path), operation in operations().items()
        for status in operation["responses"]
    }
    # A 500 can only be caused on purpose by /rollbar/test/exception; elsewhere it is a bug, not a scenario.
    # A 503 needs the database gone: test_database_unavailable_is_the_documented_503 observes those.
    expected = {(m, p, s) for (m, p, s) in documented if (s != "500" or p == "/rollbar/test/exception") and s != "503"}
    assert expected - seen == set(), "documented responses never observed"
    assert seen - documented == set()


def test_database_unavailable_is_the_documented_503(postgres_server, postgres_url):
    """With its database gone, every operation documenting a 503 answers it, as documented."""
    from cruddur.config import Config
    from tests.support.postgres import drop_database

    config = Config.from_env({}).replace(
        env="test", database_url=postgres_url, code_version="test", seed_data=True, database_connect_timeout=0.5
    )
    send = Recorder(create_app(config).test_client())
    crud = send("POST", "/api/activities", json={"message": "before", "ttl": "1-day"}).json
    drop_database(postgres_server, postgres_url)
    concrete = {"{handle}": "worf", "{activity_uuid}": crud["uuid"]}
    bodies = {
        "/api/activities": {"message": "hi", "ttl": "1-day"},
        "/api/activities/{activity_uuid}/reply": {"message": "hi"},
        "/api/messages": {"message": "hi", "user_receiver_handle": "worf"},
    }
    documented = {(m, p) for (m, p), operation in operations().items() if "503" in operation["responses"]}
    assert len(documented) >= 9
    for method, template in sorted(documented):
        path = template
        for name, value in concrete.items():
            path = path.replace(name, value)
        query = {"term": "cruds"} if template.endswith("/search") else None
        response = send(method, template, path, json=bodies.get(template), query_string=query)
        assert response.status_code == 503, (method, path, response.status_code)
        assert response.json["errors"] == ["database_unavailable"] and int(response.headers["Retry-After"]) >= 1
    assert {(m, p, "503") for m, p in documented} <= send.seen
    health = send("GET", "/api/health-check")
    assert (health.status_code, health.json["database"]) == (200, "unavailable")


def test_405_is_json_with_allow_for_every_path(client):
    for path, item in DOCUMENT["paths"].items():
        concrete = path.replace("{activity_uuid}", str(uuid.uuid4())).replace("{handle}", "worf")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            if method.lower() in item:
                continue
            response = client.open(concrete, method=method)
            assert response.status_code == 405, (method, concrete, response.status_code)
            allowed = {m.strip() for m in response.headers["Allow"].split(",")}
            assert {m.upper() for m in item if m in HTTP_METHODS} <= allowed
            body = response.get_json()
            jsonschema.validate(
                body, {"$ref": DOCUMENT_URI + "#/components/schemas/MethodNotAllowedError"}, registry=REGISTRY
            )


# -- schemathesis over the document, against the real app (WSGI) --------------------------------
SCHEMATHESIS_CONFIG = {
    "seed": 20240917,
    "generation": {"mode": "all", "deterministic": True, "max-examples": 25, "allow-x00": True},
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": True},
    },
    "checks": {
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        # 413 is the right answer to a body over the limit, which is one way data can be invalid;
        # 401 to a request without its (or with a mangled) Authorization header.
        "negative_data_rejection": {
            "enabled": True,
            "expected-statuses": [400, 401, 403, 404, 405, 413, 415, 422, 429],
        },
        "unsupported_method": {"enabled": True},
        "allow_header_conformance": {"enabled": True},
    },
    "operations": [
        {
            # A JSON or binary schema cannot say "an OTLP export from the frontend": bodies it calls
            # valid are mostly not, and the relay answers those 400 with the rule they broke.
            "include-path": TRACES,
            "checks": {"positive_data_acceptance": {"expected-statuses": [204, 400, 403, 413, 429]}},
        }
    ],
}


@schemathesis.serializer("application/x-protobuf")
def protobuf_bytes(_context, value) -> bytes:
    """Send generated binary bodies as they are: the relay decodes them as OTLP protobuf (400 when they are not)."""
    if isinstance(value, bytes):
        return value
    return getattr(value, "data", None) or str(value).encode("utf-8", "surrogatepass")


API_SCHEMA = schemathesis.openapi.from_path(
    OPENAPI_PATH, config=schemathesis.Config.from_dict(SCHEMATHESIS_CONFIG)
).exclude(path="/rollbar/test/exception")  # its job is a 500 for Rollbar; covered by the real-response test


@pytest.fixture
def signed_in(config, cognito_pool):
    """An app with sign-in on (the local Cognito pool) served on loopback, and bayko's Authorization
    header. Over HTTP, so that schemathesis's probes without credentials reach the same app."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, create_app(signed_in_config(config, cognito_pool)), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", bearer(tokens(cognito_pool, "bayko")["AccessToken"])
    finally:
        server.shutdown()
        thread.join(5)


@pytest.mark.slow
@API_SCHEMA.parametrize()
@settings(max_examples=25, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_schemathesis_no_5xx_and_responses_conform(case, signed_in):
    base_url, headers = signed_in
    case.call_and_validate(base_url=base_url, headers=headers)


@pytest.mark.slow
def test_schemathesis_stateful_links(signed_in):
    """Follow the document's links (post -> show/reply -> show parent, message -> conversation)."""
    base_url, headers = signed_in

    class Workflow(API_SCHEMA.as_state_machine()):
        def get_call_kwargs(self, case):
            return {"base_url": base_url, "headers": headers}

    Workflow.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
