"""The HTTP routes (deepm3.server.app) on tiny in-memory recommenders: the query time under
``time.query=last``, batches of users who ask for different lists, what ``/events`` promises, the
API key of the write endpoints, empty lists with their reason, and requests fuzzed from the OpenAPI
schema."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest

from tests.helpers.tiny_recommenders import (
    DAY,
    ITEM_IDS,
    ITEMS,
    KEY,
    MIXED,
    TIMES,
    USERS,
    N,
    deepm3_net,
    gru_net,
    next_times_reader,
    recommender,
)

pytest.importorskip("fastapi")
with warnings.catch_warnings():  # starlette's TestClient asks for httpx2; httpx is what it runs on here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from deepm3.server import create_app  # noqa: E402


@pytest.mark.parametrize("kind", ["gru_dt", "tisasrec"])
def test_a_known_user_under_query_last_gets_the_same_list_at_any_later_time(kind: str) -> None:
    rec = next_times_reader(kind, "last")
    with TestClient(create_app(rec)) as client:
        client.post("/events", json={"user": "u", "items": ITEMS, "timestamps": TIMES})
        soon = client.post("/recommend", json={"user": "u", "at": TIMES[-1] + 60, "k": N}).json()
        later = client.post("/recommend", json={"user": "u", "at": TIMES[-1] + 90 * DAY, "k": N}).json()
    assert soon["state"] == "recomputed"
    assert (soon["items"], soon["scores"]) == (later["items"], later["scores"])


@pytest.mark.parametrize("net", [deepm3_net, gru_net], ids=["stored-state", "stored-window"])
def test_users_asking_for_different_lists_in_one_request_each_get_their_own_answer(net) -> None:
    with TestClient(create_app(recommender(net()))) as client:
        for user, (items, times) in USERS.items():
            client.post("/events", json={"user": user, "items": items, "timestamps": times})
        together = client.post("/recommend", json=MIXED).json()
        alone = [client.post("/recommend", json=query).json() for query in MIXED]
    assert [r["user"] for r in together] == [q["user"] for q in MIXED]
    assert [len(r["items"]) for r in together] == [q["k"] for q in MIXED]
    for got, expected in zip(together, alone):
        assert got["items"] == expected["items"]
        assert got["scores"] == pytest.approx(expected["scores"], rel=1e-5, abs=1e-6)


def test_histories_asking_for_different_lists_in_one_request_each_get_their_own_answer() -> None:
    queries = [
        {"items": items, "timestamps": times, "at": 10_000, "k": q["k"], "exclude_seen": q.get("exclude_seen", True)}
        for q in MIXED
        for items, times in [USERS[q["user"]]]
    ]
    with TestClient(create_app(recommender(deepm3_net()))) as client:
        together = client.post("/recommend", json=queries).json()
        alone = [client.post("/recommend", json=query).json() for query in queries]
    for got, expected in zip(together, alone):
        assert got["items"] == expected["items"]
        assert got["scores"] == pytest.approx(expected["scores"], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("snapshot, promise", [(True, "in memory until the next snapshot"), (False, "memory only")])
def test_events_answer_says_plainly_what_is_durable(tmp_path: Path, snapshot: bool, promise: str) -> None:
    app = create_app(recommender(gru_net()), snapshot=tmp_path / "state.pt" if snapshot else None)
    with TestClient(app) as client:
        answer = client.post("/events", json={"user": "a", "items": ["i01"], "timestamps": [1]}).json()
    assert answer["durability"].startswith(promise)


EVENT = {"user": "a", "items": ["i01"], "timestamps": [1]}


@pytest.mark.parametrize(
    "headers, expected", [({}, "X-API-Key: missing"), ({"X-API-Key": "guess"}, "X-API-Key: wrong")]
)
def test_with_a_key_the_write_endpoints_refuse_requests_without_it(tmp_path: Path, headers, expected) -> None:
    with TestClient(create_app(recommender(gru_net()), snapshot=tmp_path / "s.pt", api_key=KEY)) as client:
        answers = [client.post("/events", json=EVENT, headers=headers), client.post("/snapshot", headers=headers)]
        stored = client.get("/health").json()["stored_users"]
    assert [a.status_code for a in answers] == [401, 401] and stored == 0
    assert all(a.json()["detail"].startswith(expected) for a in answers)


def test_with_a_key_the_write_endpoints_accept_it_and_reads_need_none(tmp_path: Path) -> None:
    with TestClient(create_app(recommender(gru_net()), snapshot=tmp_path / "s.pt", api_key=KEY)) as client:
        posted = client.post("/events", json=EVENT, headers={"X-API-Key": KEY})
        saved = client.post("/snapshot", headers={"X-API-Key": KEY})
        read = client.post("/recommend", json={"user": "a", "at": 5})
    assert (posted.status_code, saved.status_code, read.status_code) == (200, 200, 200)


@pytest.mark.parametrize("net", [deepm3_net, gru_net], ids=["stored-state", "stored-window"])
def test_a_known_user_who_has_seen_every_item_is_told_why_the_list_is_empty(net) -> None:
    with TestClient(create_app(recommender(net()))) as client:
        client.post("/events", json={"user": "all", "items": ITEM_IDS, "timestamps": list(range(N))})
        client.post("/events", json={"user": "some", "items": ITEM_IDS[:2], "timestamps": [1, 2]})
        answers = client.post("/recommend", json=[{"user": "all", "at": N}, {"user": "some", "at": N}]).json()
        history = client.post("/recommend", json={"items": ITEM_IDS, "timestamps": list(range(N)), "at": N}).json()
    assert answers[0]["items"] == [] and "exclude_seen=false" in answers[0]["reason"]
    assert answers[1]["items"] and answers[1]["reason"] is None
    assert history["items"] == [] and history["reason"] == answers[0]["reason"]


@pytest.mark.slow  # a few hundred generated requests (schemathesis + hypothesis)
@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_fuzzed_requests_from_the_openapi_schema_get_no_500_and_json_errors(tmp_path: Path, mode: str) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.generation import GenerationMode

    app = create_app(recommender(deepm3_net()), snapshot=tmp_path / "state.pt", api_key=KEY)
    raw = copy.deepcopy(app.openapi())
    for name in ("Query", "UserEvents"):  # mostly items the model knows, so requests reach the network
        raw["components"]["schemas"][name]["properties"]["items"] = {
            "anyOf": [{"type": "array", "items": {"enum": [*ITEM_IDS, "unknown"]}}, {"type": "null"}]
        }
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {"/recommend", "/events", "/health", "/model", "/metrics", "/snapshot"}
    if mode == "negative":  # only a body can be made invalid (GET /health has nothing to negate)
        operations = [op for op in operations if op.path in ("/recommend", "/events")]
    seen: list[int] = []
    with TestClient(app):  # runs the lifespan (snapshot loading) as a real server would
        for operation in operations:

            @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
            def check(case) -> None:
                response = case.call(app=app, headers={"X-API-Key": KEY} if case.headers is None else None)
                seen.append(response.status_code)
                assert response.status_code < 500, f"{case.method} {case.path} {case.body!r}: {response.text}"
                if response.status_code >= 400:
                    detail = response.json()["detail"]
                    assert isinstance(detail, str) and detail and "\n" not in detail

            check()
    assert any(400 <= status < 500 for status in seen)  # unknown items, times out of order, invalid bodies
    assert mode == "negative" or 200 in seen
