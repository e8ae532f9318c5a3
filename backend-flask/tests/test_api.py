"""The HTTP API (openapi.yaml), driven through the Flask test client on a real SQLite file."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from cruddur.store import open_store
from cruddur.store.migrations import version_ids

SEED_HANDLES = {"andrewbrown", "bayko", "worf", "garek", "londo"}
ACTIVITY_FIELDS = {
    "uuid",
    "handle",
    "display_name",
    "message",
    "created_at",
    "expires_at",
    "likes_count",
    "replies_count",
    "reposts_count",
    "replies",
}


def post(client, path, body):
    return client.post(path, json=body)


def test_health_check(client):
    r = client.get("/api/health-check")
    assert r.status_code == 200
    assert r.json["success"] is True


def test_home_is_seeded_newest_first_with_the_documented_shape(client):
    feed = client.get("/api/activities/home").json
    assert len(feed) >= 5
    assert {a["handle"] for a in feed} <= SEED_HANDLES
    for activity in feed:
        assert set(activity) == ACTIVITY_FIELDS
        for reply in activity["replies"]:
            assert set(reply) == ACTIVITY_FIELDS | {"reply_to_activity_uuid"}
            assert reply["reply_to_activity_uuid"] == activity["uuid"]
        assert activity["replies_count"] == len(activity["replies"])
        created = datetime.fromisoformat(activity["created_at"])
        assert created.utcoffset() == timedelta(0)
    times = [a["created_at"] for a in feed]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(
    ("ttl", "delta"),
    [("30-days", timedelta(days=30)), ("12-hours", timedelta(hours=12)), ("1-hour", timedelta(hours=1))],
)
def test_post_sets_expiry_from_ttl_and_lists_it_first(client, ttl, delta):
    r = post(client, "/api/activities", {"message": "Hello Cruddur", "ttl": ttl})
    assert r.status_code == 200
    crud = r.json
    assert crud["handle"] == "andrewbrown"
    assert crud["display_name"] == "Andrew Brown"
    created = datetime.fromisoformat(crud["created_at"])
    assert datetime.fromisoformat(crud["expires_at"]) - created == delta
    assert abs(datetime.now(UTC) - created) < timedelta(seconds=30)
    assert client.get("/api/activities/home").json[0]["uuid"] == crud["uuid"]


def test_body_cannot_choose_the_author(client):
    r = post(
        client,
        "/api/activities",
        {"message": "impostor", "ttl": "1-day", "handle": "worf", "user_handle": "worf", "display_name": "W"},
    )
    assert r.status_code == 200
    assert r.json["handle"] == "andrewbrown"
    r = post(client, "/api/messages", {"message": "hi", "user_receiver_handle": "worf", "handle": "bayko"})
    assert r.json["handle"] == "andrewbrown"


def test_acting_user_comes_from_configuration(config):
    from cruddur import create_app

    client = create_app(config.replace(user_handle="newcomer")).test_client()
    r = post(client, "/api/activities", {"message": "first!", "ttl": "1-day"})
    assert r.status_code == 200
    assert r.json["handle"] == "newcomer"


def _count(store, table: str) -> int:
    return store._execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"]


def test_posts_by_an_acting_user_that_is_gone_fail_and_write_nothing(config):
    """The acting user is made at startup and users are never deleted. Should it be gone anyway (a
    database edited by hand), every post is a 500 and leaves nothing behind: no crud, no reply,
    no replies_count, no conversation."""
    from cruddur import create_app

    client = create_app(config.replace(user_handle="ghost")).test_client()
    parent = client.get("/api/activities/home").json[0]
    with open_store(config) as store:
        store._execute("DELETE FROM users WHERE handle = 'ghost'")
        before = {table: _count(store, table) for table in ("activities", "messages", "message_groups")}
    for path, body in (
        ("/api/activities", {"message": "boo", "ttl": "1-day"}),
        (f"/api/activities/{parent['uuid']}/reply", {"message": "boo"}),
        ("/api/messages", {"message": "boo", "user_receiver_handle": "garek"}),  # no conversation yet
        ("/api/messages", {"message": "boo", "user_receiver_handle": "bayko"}),
    ):
        r = post(client, path, body)
        assert (r.status_code, r.json["errors"]) == (500, ["internal_server_error"]), path
    with open_store(config) as store:
        assert {table: _count(store, table) for table in before} == before
    assert client.get(f"/api/activities/{parent['uuid']}").json["replies_count"] == parent["replies_count"]


def test_concurrent_replies_and_first_messages(config):
    """Four app instances (each with its own connections) writing at once: every crud is stored,
    every reply is counted on its crud, and the first messages between one pair all land in one
    conversation."""
    import threading

    from cruddur import create_app

    apps = [create_app(config) for _ in range(4)]
    crud = post(apps[0].test_client(), "/api/activities", {"message": "busy", "ttl": "1-day"}).json
    barrier = threading.Barrier(len(apps))
    statuses: list[int] = []

    def write(app, n):
        client = app.test_client()
        barrier.wait(30)
        for i in range(10):
            body = {"message": f"m{n}.{i}", "user_receiver_handle": "londo"}
            statuses.append(post(client, "/api/messages", body).status_code)
            statuses.append(post(client, f"/api/activities/{crud['uuid']}/reply", {"message": f"r{n}.{i}"}).status_code)
            statuses.append(post(client, "/api/activities", {"message": f"c{n}.{i}", "ttl": "1-day"}).status_code)

    threads = [threading.Thread(target=write, args=(app, n)) for n, app in enumerate(apps)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * 120
    with open_store(config) as store:
        n = store._execute("SELECT COUNT(*) AS n FROM activities WHERE message LIKE ?", ("c%.%",)).fetchone()["n"]
    assert n == 40
    client = apps[0].test_client()
    shown = client.get(f"/api/activities/{crud['uuid']}").json
    assert (shown["replies_count"], len(shown["replies"])) == (40, 40)
    assert len(client.get("/api/messages/@londo").json) == 40
    assert [g["handle"] for g in client.get("/api/message_groups").json].count("londo") == 1


@pytest.mark.parametrize(
    ("body", "codes"),
    [
        ({"ttl": "1-day"}, ["message_blank"]),
        ({"message": "   \n\t", "ttl": "1-day"}, ["message_blank"]),
        ({"message": "x" * 281, "ttl": "1-day"}, ["message_exceed_max_chars"]),
        ({"message": "ok"}, ["ttl_blank"]),
        ({"message": "ok", "ttl": "2-days"}, ["ttl_blank"]),
        ({"message": "", "ttl": ""}, ["message_blank", "ttl_blank"]),
        ({"message": "x" * 281, "ttl": None}, ["message_exceed_max_chars", "ttl_blank"]),
    ],
)
def test_create_activity_422_lists_every_code(client, body, codes):
    r = post(client, "/api/activities", body)
    assert r.status_code == 422
    assert r.json["errors"] == codes


def test_280_characters_count_code_points_not_bytes(client):
    message = "é" * 279 + "🙂"
    r = post(client, "/api/activities", {"message": message, "ttl": "1-day"})
    assert r.status_code == 200
    assert r.json["message"] == message


def test_expired_activities_are_hidden(client, config):
    with open_store(config) as store:
        user = store.user_by_handle("worf")
        past = datetime.now(UTC) - timedelta(days=2)
        expired = store.insert_activity(user["uuid"], "expired crud qzx", past, past + timedelta(hours=1))
    assert expired not in {a["uuid"] for a in client.get("/api/activities/home").json}
    assert expired not in {a["uuid"] for a in client.get("/api/activities/@worf").json}
    assert client.get("/api/activities/search?term=qzx").json == []
    assert client.get(f"/api/activities/{expired}").status_code == 404
    assert post(client, f"/api/activities/{expired}/reply", {"message": "late"}).status_code == 404


def test_user_feed(client):
    feed = client.get("/api/activities/@worf").json
    assert feed and {a["handle"] for a in feed} == {"worf"}
    assert client.get("/api/activities/@nobody").status_code == 404


def test_search_by_words(client):
    post(client, "/api/activities", {"message": "Serverless pizza on Friday", "ttl": "1-day"})
    found = client.get("/api/activities/search", query_string={"term": "friday PIZZA"}).json
    assert [a["message"] for a in found] == ["Serverless pizza on Friday"]
    assert client.get("/api/activities/search", query_string={"term": "pizza nothere"}).json == []
    # LIKE wildcards in the term are literal characters, not patterns.
    assert client.get("/api/activities/search", query_string={"term": "%"}).json == []
    for term in (None, "", "   "):
        r = client.get("/api/activities/search", query_string={} if term is None else {"term": term})
        assert r.status_code == 422
        assert r.json["errors"] == ["search_term_blank"]


def test_reply_counts_and_show(client):
    crud = post(client, "/api/activities", {"message": "reply to me", "ttl": "1-day"}).json
    r = post(client, f"/api/activities/{crud['uuid']}/reply", {"message": "a reply"})
    assert r.status_code == 200
    assert r.json["reply_to_activity_uuid"] == crud["uuid"]
    assert r.json["expires_at"] == crud["expires_at"]
    shown = client.get(f"/api/activities/{crud['uuid']}").json
    assert shown["replies_count"] == 1
    assert [reply["message"] for reply in shown["replies"]] == ["a reply"]
    assert client.get("/api/activities/home").json[0]["replies_count"] == 1


def test_reply_errors(client):
    crud = post(client, "/api/activities", {"message": "x", "ttl": "1-day"}).json
    assert post(client, f"/api/activities/{uuid.uuid4()}/reply", {"message": "x"}).status_code == 404
    r = post(client, f"/api/activities/{crud['uuid']}/reply", {"message": ""})
    assert (r.status_code, r.json["errors"]) == (422, ["message_blank"])
    r = post(client, f"/api/activities/{crud['uuid']}/reply", {"message": "y" * 281})
    assert (r.status_code, r.json["errors"]) == (422, ["message_exceed_max_chars"])
    assert client.get(f"/api/activities/{uuid.uuid4()}").status_code == 404
    assert client.get("/api/activities/not-a-uuid").status_code == 404


def test_notifications_are_replies_and_mentions_of_the_acting_user(client):
    notes = client.get("/api/activities/notifications").json
    assert notes
    assert all(n["handle"] != "andrewbrown" for n in notes)
    assert any(n.get("reply_to_activity_uuid") for n in notes)
    assert any("@andrewbrown" in n["message"] for n in notes)


def test_messages(client):
    groups = client.get("/api/message_groups").json
    assert {g["handle"] for g in groups} == {"bayko", "worf"}
    assert set(groups[0]) == {"uuid", "display_name", "handle", "message", "created_at"}
    r = post(client, "/api/messages", {"message": "Qapla'", "user_receiver_handle": "garek"})
    assert r.status_code == 200
    assert set(r.json) == {"uuid", "display_name", "handle", "message", "created_at"}
    conversation = client.get("/api/messages/@garek").json
    assert [m["message"] for m in conversation] == ["Qapla'"]
    assert client.get("/api/message_groups").json[0]["handle"] == "garek"
    seeded = client.get("/api/messages/@bayko").json
    times = [m["created_at"] for m in seeded]
    assert times == sorted(times) and len(seeded) == 3


def test_message_errors(client):
    assert client.get("/api/messages/@nobody").status_code == 404
    r = post(client, "/api/messages", {"message": "hi", "user_receiver_handle": "nobody"})
    assert r.status_code == 404
    r = post(client, "/api/messages", {"message": "", "user_receiver_handle": "worf"})
    assert (r.status_code, r.json["errors"]) == (422, ["message_blank"])
    r = post(client, "/api/messages", {"message": "m" * 1025, "user_receiver_handle": "worf"})
    assert (r.status_code, r.json["errors"]) == (422, ["message_exceed_max_chars"])
    assert post(client, "/api/messages", {"message": "m" * 1024, "user_receiver_handle": "worf"}).status_code == 200


@pytest.mark.parametrize(
    "text",
    [
        "'; DROP TABLE activities; --",
        '<script>alert("x")</script> & <b>bold</b>',
        "emoji 🚀🔥👩‍💻 and flags 🇨🇦",
        "\u202eright-to-left override\u200f mark \u05e9\u05dc\u05d5\u05dd",
        "quotes \" ' ` and backslash \\ and percent %_ and bell \x07 end",
        "line\nbreaks\r\nand\ttabs  ",
    ],
)
def test_text_is_stored_and_returned_byte_for_byte(client, text):
    crud = post(client, "/api/activities", {"message": text, "ttl": "1-day"}).json
    assert crud["message"] == text
    assert client.get(f"/api/activities/{crud['uuid']}").json["message"] == text
    reply = post(client, f"/api/activities/{crud['uuid']}/reply", {"message": text}).json
    assert reply["message"] == text
    message = post(client, "/api/messages", {"message": text, "user_receiver_handle": "londo"}).json
    assert message["message"] == text
    assert client.get("/api/messages/@londo").json[-1]["message"] == text


def test_nul_is_refused_in_stored_text_and_finds_nothing_in_lookups(client):
    """PostgreSQL's text cannot hold NUL: both databases refuse it in what is stored (400) and find
    nothing for a handle, uuid or search term that has one."""
    crud = post(client, "/api/activities", {"message": "a crud", "ttl": "1-day"}).json
    for path, body in (
        ("/api/activities", {"message": "nul \x00 here", "ttl": "1-day"}),
        (f"/api/activities/{crud['uuid']}/reply", {"message": "\x00"}),
        ("/api/messages", {"message": "a\x00b", "user_receiver_handle": "worf"}),
    ):
        r = post(client, path, body)
        assert (r.status_code, r.json["errors"]) == (400, ["message_contains_nul"]), path
    assert client.get("/api/activities/@worf%00").status_code == 404
    assert client.get("/api/messages/@worf%00").status_code == 404
    assert client.get("/api/activities/search", query_string={"term": "crud\x00"}).json == []
    assert client.get(f"/api/activities/{crud['uuid']}%00").status_code == 404
    r = post(client, "/api/messages", {"message": "hi", "user_receiver_handle": "worf\x00"})
    assert r.status_code == 404
    assert client.get(f"/api/activities/{crud['uuid']}").json["replies_count"] == 0


def test_error_bodies_are_json(client):
    cases = [
        (client.post("/api/activities", data="{not json", content_type="application/json"), 400),
        (client.post("/api/activities", json=["a", "list"]), 400),
        (client.post("/api/activities", json={"message": 5, "ttl": "1-day"}), 400),
        (
            client.post(
                "/api/activities",
                data='{"message": "\\ud800", "ttl": "1-day"}',
                content_type="application/json",
            ),
            400,
        ),
        (client.post("/api/activities", data=b"\xff\xfe{}", content_type="application/json"), 400),
        (client.get("/api/nothing-here"), 404),
        (client.delete("/api/activities/home"), 405),
        (client.post("/api/activities", data="x" * (1024 * 1024 + 1), content_type="application/json"), 413),
        (
            client.post("/api/activities", data="message=hi", content_type="application/x-www-form-urlencoded"),
            415,
        ),
        (client.get("/rollbar/test/exception"), 500),
    ]
    for response, status in cases:
        assert response.status_code == status, (status, response.data[:200])
        assert response.is_json, response.data[:200]
        assert response.json["errors"], response.json
        assert "Traceback" not in response.get_data(as_text=True)
    assert cases[6][0].headers["Allow"]


def test_rollbar_test_routes_outside_production(client):
    r = client.get("/rollbar/test")
    assert (r.status_code, r.get_data(as_text=True)) == (200, "Hello World!")


def test_rollbar_test_routes_absent_in_production(config):
    from cruddur import create_app

    client = create_app(config.replace(env="production")).test_client()
    assert client.get("/rollbar/test").status_code == 404
    assert client.get("/rollbar/test/exception").status_code == 404


def test_cors_allows_only_configured_origins_and_trace_headers(client):
    r = client.options(
        "/api/activities",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, traceparent, tracestate, x-amzn-trace-id",
        },
    )
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    allowed = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "traceparent", "tracestate", "x-amzn-trace-id"} <= allowed
    r = client.get("/api/activities/home", headers={"Origin": "http://localhost:3000"})
    exposed = {h.strip().lower() for v in r.headers.getlist("Access-Control-Expose-Headers") for h in v.split(",")}
    assert {"traceresponse", "x-amzn-trace-id"} <= exposed
    r = client.get("/api/activities/home", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_every_response_carries_traceresponse_and_continues_traceparent(client):
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    r = client.get("/api/activities/home", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"})
    version, got_trace, span_id, flags = r.headers["traceresponse"].split("-")
    assert (version, got_trace, len(span_id), flags) == ("00", trace_id, 16, "01")
    assert client.get("/api/nothing").headers["traceresponse"].startswith("00-")


def test_database_survives_a_new_app(config):
    from cruddur import create_app

    first = create_app(config).test_client()
    crud = post(first, "/api/activities", {"message": "persisted", "ttl": "1-day"}).json
    second = create_app(config).test_client()
    assert second.get("/api/activities/home").json[0]["uuid"] == crud["uuid"]
    # Seeding happens once: a second start does not duplicate the seed.
    handles = [a["message"] for a in second.get("/api/activities/home").json]
    assert len(handles) == len(set(handles))


def test_search_term_length_is_bounded(client):
    for term in ("a " * 21, "x" * 281):
        r = client.get("/api/activities/search", query_string={"term": term})
        assert (r.status_code, r.json["errors"]) == (422, ["search_term_too_long"])
    assert client.get("/api/activities/search", query_string={"term": "a " * 20}).status_code == 200


def test_json_nested_too_deeply_is_malformed_not_a_crash(client):
    r = client.post("/api/activities", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert (r.status_code, r.json["errors"]) == (400, ["malformed_json"])
    assert client.post("/api/activities", json={"message": "fields keep their order", "ttl": "1-day"}).data.startswith(
        b'{"uuid":'
    )


def _build_app(config, barrier):
    from cruddur import create_app

    barrier.wait(30)
    create_app(config)


def test_workers_creating_one_new_database_together(config):
    """gunicorn starts its workers at once and each migrates: no "database is locked", no
    duplicate key, the schema applied once and the seed written once (lock file or advisory lock)."""
    import multiprocessing

    # Fresh interpreters, as gunicorn's workers are: a fork of this threaded test process can inherit
    # a lock another thread holds (logging's, an import's) and hang.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(6)
    workers = [context.Process(target=_build_app, args=(config, barrier)) for _ in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    exit_codes = [w.exitcode for w in workers]
    for worker in workers:
        worker.kill()  # one that hung would outlive the test
    assert exit_codes == [0] * 6
    with open_store(config) as store:
        assert store._execute("SELECT COUNT(*) AS n FROM users").fetchone()["n"] == 5
        assert store._execute("SELECT COUNT(*) AS n FROM activities").fetchone()["n"] == 7
        assert store._execute("SELECT COUNT(*) AS n FROM schema_meta WHERE key = 'seeded'").fetchone()["n"] == 1
        assert store._execute("SELECT COUNT(*) AS n FROM _yoyo_migration").fetchone()["n"] == len(version_ids())


def test_seed_data_only_in_development(config):
    from cruddur import create_app

    for env, seeded in (("production", False), ("test", False), ("development", True)):
        assert config.replace(env=env, seed_data=None).seeds_database is seeded
    client = create_app(config.replace(env="test", seed_data=None)).test_client()
    assert client.get("/api/activities/home").json == []
    assert client.post("/api/activities", json={"message": "first", "ttl": "1-day"}).json["handle"] == "andrewbrown"
