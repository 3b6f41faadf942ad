"""The HTTP server (issue 17): endpoints, stored state, limits, metrics, snapshots, concurrency.

Most tests use FastAPI's TestClient on apps built in memory: DeepM3 and GRU4Rec networks with
random weights (a non-zero vector field, so the flow between events matters) wrapped in a
``Recommender``. One tiny trained run dir (tests/helpers/serve_fixtures.py) covers ``GET /model`` and
the command line; two tests go through real sockets (uvicorn in a thread, and
``python -m deepm3.serve`` in a subprocess) and stop what they started.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
with warnings.catch_warnings():  # starlette's TestClient asks for httpx2; httpx is what it runs on here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from deepm3.errors import DataError  # noqa: E402
from deepm3.models.components.deepm3 import DeepM3Net  # noqa: E402
from deepm3.models.components.gru4rec import GRU4RecNet  # noqa: E402
from deepm3.recommender import Recommender  # noqa: E402
from deepm3.server import Limits, create_app  # noqa: E402
from deepm3.server.batching import MicroBatcher  # noqa: E402
from deepm3.server.cli import serve  # noqa: E402
from tests.helpers.config import CONF_DIR  # noqa: E402
from tests.helpers.serve_fixtures import TrainedRun, train_tiny  # noqa: E402

N = 30
MAX_LEN = 5
ITEM_IDS = [f"sku-{7 * i + 3:03d}" for i in range(N)]
ROOT = Path(__file__).resolve().parents[1]


def deepm3_rec(query: str = "target", max_len: int = MAX_LEN, seed: int = 0) -> Recommender:
    torch.manual_seed(seed)
    net = DeepM3Net(
        N,
        hidden=8,
        dropout=0.0,
        field={"width": 16, "zero_init": False},
        time={"query": query},
        solver={"method": "rk4", "steps": 1},
    )
    return Recommender(
        net, ITEM_IDS, max_len=max_len, popularity=np.arange(N + 1), device="cpu", name="deepm3", query=query
    )


def gru_rec(seed: int = 0) -> Recommender:
    torch.manual_seed(seed)
    net = GRU4RecNet(N, hidden=8, gru_hidden=8, dropout=0.0)
    return Recommender(net, ITEM_IDS, max_len=MAX_LEN, popularity=np.arange(N + 1), device="cpu", name="gru4rec")


def history(seed: int, length: int) -> tuple[list[str], list[int]]:
    """Distinct raw items with gaps from seconds to months, oldest first."""
    rng = np.random.default_rng(seed)
    items = [ITEM_IDS[i] for i in rng.choice(N, size=length, replace=False)]
    times = (1_500_000_000 + np.cumsum(rng.choice([0, 30, 3_600, 86_400, 40 * 86_400], size=length))).tolist()
    return items, times


def scores_of(body: dict) -> dict[str, float]:
    return dict(zip(body["items"], body["scores"]))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    return train_tiny(tmp_path_factory.mktemp("http-deepm3"), "model.net.hidden=16", "model.net.field.width=16")


# --- endpoints ---------------------------------------------------------------------------------


def test_model_and_health_describe_the_served_run(trained):
    rec = Recommender.load(trained.run_dir, device="cpu")
    with TestClient(create_app(rec, run=trained.run_dir)) as client:
        model = client.get("/model").json()
        health = client.get("/health").json()
    assert model["model"] == "deepm3" and model["network"] == "DeepM3Net"
    assert model["solver"]["method"] == "euler" and model["items"] == 20 and model["max_len"] == 5
    assert model["query"] == "target" and model["uses_time"] is True and model["stored_state"] == "state"
    assert model["checkpoint"].endswith(".ckpt") and "/" not in model["checkpoint"]  # no server paths leak
    assert model["code_version"] and model["trained_code_version"] == trained.metrics["provenance"]["code_version"]
    assert health == {"status": "ok", "model": "deepm3", "stored_users": 0}


def test_history_requests_equal_the_python_api_one_or_a_batch(trained):
    rec = Recommender.load(trained.run_dir, device="cpu")
    rows = [trained.history(user) for user in range(6)]
    expected = rec.recommend_batch([r[0] for r in rows], [r[1] for r in rows], at=[r[3] for r in rows], k=4)
    with TestClient(create_app(rec, run=trained.run_dir)) as client:
        one = client.post("/recommend", json={"items": rows[0][0], "timestamps": rows[0][1], "at": rows[0][3], "k": 4})
        many = client.post("/recommend", json=[{"items": i, "timestamps": t, "at": a, "k": 4} for i, t, _, a in rows])
    assert one.status_code == 200 and many.status_code == 200
    assert one.json()["items"] == many.json()[0]["items"]  # batched and single scores differ in the last bits
    for body, result in zip(many.json(), expected):
        assert body["items"] == [item for item, _ in result] and body["source"] == "model" and body["state"] is None
        assert body["scores"] == pytest.approx([score for _, score in result], rel=1e-6)


@pytest.mark.parametrize("query", ["target", "last"])
def test_stored_state_after_events_equals_the_full_recompute(query):
    rec = deepm3_rec(query)
    histories = {f"u{s}": history(s, MAX_LEN) for s in range(4)}  # each fits the window
    with TestClient(create_app(rec)) as client:
        first = [{"user": u, "items": i[:2], "timestamps": t[:2]} for u, (i, t) in histories.items()]
        rest = [{"user": u, "items": i[2:], "timestamps": t[2:]} for u, (i, t) in histories.items()]
        assert client.post("/events", json=first).status_code == 200  # a batch of users, in two posts
        assert client.post("/events", json=rest).json()["accepted"] == 4 * (MAX_LEN - 2)
        for user, (items, times) in histories.items():
            for delay in (0, 3_600, 90 * 86_400):
                at = times[-1] + delay
                served = client.post("/recommend", json={"user": user, "at": at, "k": N}).json()
                recomputed = rec.recommend(items, times, at=at, k=N)
                assert served["state"] == "stored" and served["source"] == "model"
                assert served["items"] == [item for item, _ in recomputed]
                assert served["scores"] == pytest.approx([score for _, score in recomputed], rel=1e-5, abs=1e-6)


def test_beyond_the_window_the_stored_state_remembers_every_event():
    rec = deepm3_rec()
    items, times = history(7, 3 * MAX_LEN)
    at = times[-1] + 600
    with TestClient(create_app(rec)) as client:
        client.post("/events", json={"user": "long", "items": items, "timestamps": times})
        served = scores_of(client.post("/recommend", json={"user": "long", "at": at, "k": N}).json())
    unbounded = Recommender(rec.net, ITEM_IDS, max_len=1000, device="cpu")  # a window that holds everything
    everything = dict(unbounded.recommend(items, times, at=at, k=N))
    window = dict(rec.recommend(items, times, at=at, k=N))
    assert served.keys() == everything.keys() == set(ITEM_IDS) - set(items)
    assert [served[i] for i in everything] == pytest.approx(list(everything.values()), rel=1e-4, abs=1e-5)
    assert [served[i] for i in window] != pytest.approx(list(window.values()), rel=1e-3)


def test_window_models_recompute_from_the_stored_events():
    rec = gru_rec()
    items, times = history(3, 3 * MAX_LEN)
    with TestClient(create_app(rec)) as client:
        assert client.get("/model").json()["stored_state"] == "window"
        for start in range(0, len(items), 4):
            client.post(
                "/events", json={"user": "g", "items": items[start : start + 4], "timestamps": times[start : start + 4]}
            )
        served = client.post("/recommend", json={"user": "g", "at": times[-1] + 5, "k": 7}).json()
    expected = rec.recommend(items, times, at=times[-1] + 5, k=7)  # the last max_len events; every item seen left out
    assert served["state"] == "recomputed"
    assert served["items"] == [item for item, _ in expected]
    assert served["scores"] == pytest.approx([score for _, score in expected], rel=1e-6)


def test_exclude_seen_and_k_for_a_known_user():
    rec = deepm3_rec()
    items, times = history(1, 4)
    with TestClient(create_app(rec, k=3)) as client:
        client.post("/events", json={"user": "u", "items": items, "timestamps": times})
        default = client.post("/recommend", json={"user": "u", "at": times[-1]}).json()
        everything = client.post(
            "/recommend", json={"user": "u", "at": times[-1], "k": 100, "exclude_seen": False}
        ).json()
    assert len(default["items"]) == 3 and not set(default["items"]) & set(items)
    assert set(everything["items"]) == set(ITEM_IDS)  # column 0 (padding) never comes back


def test_unknown_user_gets_popular_items_and_counts_a_miss_in_the_metrics():
    rec = deepm3_rec()
    items, times = history(2, 3)
    with TestClient(create_app(rec)) as client:
        client.post("/events", json={"user": "known", "items": items, "timestamps": times})
        miss = client.post("/recommend", json={"user": "stranger", "k": 3}).json()
        client.post("/recommend", json=[{"user": "known", "at": times[-1]}] * 2)
        client.post("/recommend", json={"items": ["nope"], "timestamps": [1]})
        text = client.get("/metrics").text
    assert miss["source"] == "popularity" and miss["state"] == "miss"
    assert miss["items"] == [ITEM_IDS[-1], ITEM_IDS[-2], ITEM_IDS[-3]]  # popularity = item index here
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    model = ("model", "deepm3")
    assert samples[("deepm3_state_hits_total", (model,))] == 2
    assert samples[("deepm3_state_misses_total", (model,))] == 1
    assert samples[("deepm3_events_total", (model,))] == 3
    assert samples[("deepm3_stored_users", (model,))] == 1
    assert samples[("deepm3_requests_total", (("endpoint", "/recommend"), model, ("status", "200")))] == 2
    assert samples[("deepm3_request_errors_total", (("endpoint", "/recommend"), model, ("status", "422")))] == 1
    assert samples[("deepm3_request_seconds_count", (("endpoint", "/recommend"), model))] == 3
    assert samples[("deepm3_request_seconds_count", (("endpoint", "/events"), model))] == 1


# --- bad input -------------------------------------------------------------------------------

GOOD = {"items": ITEM_IDS[:3], "timestamps": [100, 200, 300], "at": 400}


@pytest.mark.parametrize(
    "path, body, status, expected",
    [
        ("/recommend", {**GOOD, "timestamps": [100, 300, 200]}, 422, "body: timestamps must be in time order"),
        ("/recommend", {**GOOD, "items": ["sku-999", *ITEM_IDS[:2]]}, 422, "unknown item id 'sku-999' (items[0])"),
        ("/recommend", {**GOOD, "at": 250}, 422, "body: at=250 is earlier than the last event (timestamps[2]=300)"),
        (
            "/recommend",
            {**GOOD, "timestamps": [100, "soon", 300]},
            422,
            "body.timestamps[1]: Input should be a valid integer",
        ),
        (
            "/recommend",
            {**GOOD, "timestamps": [100, 2.5, 300]},
            422,
            "body.timestamps[1]: Input should be a valid integer",
        ),
        ("/recommend", {**GOOD, "timestamps": [100, -1, 300]}, 422, "body.timestamps[1]: Input should be greater than"),
        ("/recommend", {**GOOD, "items": [None, "a", "b"]}, 422, "body.items[0]: expected an item id"),
        ("/recommend", {**GOOD, "timestamps": [100]}, 422, "body: 3 items but 1 timestamps"),
        ("/recommend", {**GOOD, "k": 0}, 422, "body.k: Input should be greater than or equal to 1"),
        ("/recommend", {**GOOD, "exclude_seen": "yes"}, 422, "body.exclude_seen: Input should be a valid boolean"),
        ("/recommend", {**GOOD, "user": "u"}, 422, "body: give either user or items and timestamps"),
        ("/recommend", {"at": 5}, 422, "body: give user"),
        ("/recommend", {**GOOD, "path": "/etc/passwd"}, 422, "body.path: Extra inputs are not permitted"),
        ("/recommend", [GOOD, {**GOOD, "at": 1}], 422, "body[1]: at=1 is earlier than the last event"),
        ("/recommend", [GOOD] * 5, 413, "body: 5 entries; at most 4 per request (limits.max_batch)"),
        (
            "/recommend",
            {**GOOD, "items": ITEM_IDS[:20], "timestamps": list(range(20))},
            413,
            "body.items: 20 events; at most 10 per history (limits.max_events)",
        ),
        ("/recommend", [], 422, "body: an empty list"),
        ("/recommend", "not an object", 422, "body: Input should be a valid dictionary"),
        (
            "/recommend",
            {"user": "u", "at": 10},
            422,
            "body.at=10 is earlier than the last stored event of user 'u' (300)",
        ),
        (
            "/events",
            {"user": "u", "items": ITEM_IDS[:2], "timestamps": [299, 400]},
            422,
            "body.timestamps[0]=299 is earlier than the last stored event of user 'u' (300)",
        ),
        ("/events", {"user": "v", "items": ["x"], "timestamps": [5]}, 422, "body.items[0]: unknown item id 'x'"),
        (
            "/events",
            {"user": "", "items": [], "timestamps": []},
            422,
            "body.user: String should have at least 1 character",
        ),
        (
            "/events",
            {"user": "v", "items": ITEM_IDS[:2], "timestamps": [9, 8]},
            422,
            "body.timestamps must be in time order",
        ),
        ("/snapshot", None, 409, "snapshots are off"),
    ],
)
def test_bad_input_is_a_one_line_4xx_naming_the_field(path, body, status, expected):
    limits = Limits(max_body_bytes=4_000, max_batch=4, max_events=10)
    with TestClient(create_app(deepm3_rec(), limits=limits)) as client:
        client.post("/events", json={"user": "u", "items": ITEM_IDS[:3], "timestamps": [100, 200, 300]})
        response = client.post(path, json=body) if body is not None else client.post(path)
        assert client.get("/health").status_code == 200  # the server is still up
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in response.text
    assert expected in detail


@pytest.mark.parametrize(
    "content, status, expected",
    [
        (b"{nope", 400, "body: not valid JSON"),
        (b"[" * 1_990 + b"]" * 1_990, 400, "body: JSON nested too deeply"),
        (b" " * 5_000, 413, "body: 5000 bytes; at most 4000 (limits.max_body_bytes)"),
        (b"\xff\xfe", 400, "body: not valid JSON"),
    ],
)
def test_unreadable_or_oversized_bodies_are_refused_in_one_line(content, status, expected):
    with TestClient(create_app(deepm3_rec(), limits=Limits(max_body_bytes=4_000))) as client:
        response = client.post("/recommend", content=content)
        streamed = client.post("/events", content=iter([b" " * 3_000, b" " * 3_000]))  # no Content-Length
    assert (response.status_code, streamed.status_code) == (status, 413)
    assert expected in response.json()["detail"] and "\n" not in response.json()["detail"]
    assert streamed.json()["detail"] == "body: more than 4000 bytes (limits.max_body_bytes)"


def test_a_rejected_events_batch_changes_nothing():
    with TestClient(create_app(deepm3_rec())) as client:
        bad = [
            {"user": "a", "items": ITEM_IDS[:2], "timestamps": [1, 2]},
            {"user": "b", "items": ["nope"], "timestamps": [3]},
        ]
        assert client.post("/events", json=bad).status_code == 422
        assert client.get("/health").json()["stored_users"] == 0


def test_no_request_changes_the_model():
    rec = deepm3_rec()
    before = {name: value.clone() for name, value in rec.net.state_dict().items()}
    items, times = history(4, 4)
    with TestClient(create_app(rec)) as client:
        client.post("/events", json={"user": "u", "items": items, "timestamps": times})
        client.post("/recommend", json=[{"user": "u"}, {"items": items, "timestamps": times}])
    assert all(torch.equal(before[name], value) for name, value in rec.net.state_dict().items())
    assert not any(p.requires_grad for p in rec.net.parameters()) and not rec.net.training


# --- snapshots -------------------------------------------------------------------------------


def test_snapshot_round_trip_on_request_and_on_shutdown(tmp_path):
    path = tmp_path / "state" / "users.pt"
    rec = deepm3_rec()
    users = {f"u{s}": history(s, 4) for s in range(3)}
    with TestClient(create_app(rec, snapshot=path)) as client:
        for user, (items, times) in users.items():
            client.post("/events", json={"user": user, "items": items[:2], "timestamps": times[:2]})
        saved = client.post("/snapshot").json()
        assert saved["users"] == 3 and saved["file"] == "users.pt" and path.is_file()
        for user, (items, times) in users.items():
            client.post("/events", json={"user": user, "items": items[2:], "timestamps": times[2:]})
        before = [
            client.post("/recommend", json={"user": u, "at": t[-1] + 60, "k": N}).json() for u, (_, t) in users.items()
        ]
    # leaving the client shut the app down, which saved the state again (with all the events)
    with TestClient(create_app(deepm3_rec(), snapshot=path)) as client:
        assert client.get("/health").json()["stored_users"] == 3
        after = [
            client.post("/recommend", json={"user": u, "at": t[-1] + 60, "k": N}).json() for u, (_, t) in users.items()
        ]
        more = client.post(
            "/events", json={"user": "u0", "items": [ITEM_IDS[-1]], "timestamps": [users["u0"][1][-1] - 1]}
        )
    assert after == before
    assert more.status_code == 422  # the reloaded user still knows its last event
    assert sorted(p.name for p in path.parent.iterdir()) == ["users.pt"]  # no temporary file left


def test_a_missing_or_corrupt_snapshot_is_a_log_line_and_an_empty_state(tmp_path, caplog):
    path = tmp_path / "state.pt"
    with caplog.at_level("INFO", logger="deepm3.server"), TestClient(create_app(deepm3_rec(), snapshot=path)) as client:
        assert client.get("/health").json()["stored_users"] == 0
    assert "no state snapshot at" in caplog.text and "training data and the model are not affected" in caplog.text
    path.write_bytes(b"not a snapshot")
    caplog.clear()
    with caplog.at_level("INFO", logger="deepm3.server"), TestClient(create_app(deepm3_rec(), snapshot=path)) as client:
        assert client.get("/health").json()["stored_users"] == 0
        client.post("/events", json={"user": "x", "items": ITEM_IDS[:1], "timestamps": [1]})
    assert "not loaded" in caplog.text and "moved to state.pt.rejected-" in caplog.text
    assert len(list(tmp_path.glob("state.pt.rejected-*"))) == 1 and path.is_file()  # the new state was saved


def test_a_snapshot_that_cannot_be_written_is_a_503_and_a_log_line_at_shutdown(tmp_path, caplog, monkeypatch):
    app = create_app(deepm3_rec(), snapshot=tmp_path / "state.pt")

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(app.state.server.store, "save", disk_full)
    with caplog.at_level("ERROR", logger="deepm3.server"), TestClient(app) as client:
        response = client.post("/snapshot")
    assert (response.status_code, response.json()["detail"]) == (
        503,
        "cannot write the state snapshot (No space left on device); see the server log",
    )
    assert "state not saved on shutdown: cannot write the state snapshot (No space left" in caplog.text


def test_a_snapshot_of_another_model_is_not_loaded(tmp_path, caplog):
    path = tmp_path / "state.pt"
    with TestClient(create_app(deepm3_rec(), snapshot=path)) as client:
        client.post("/events", json={"user": "x", "items": ITEM_IDS[:1], "timestamps": [1]})
    with caplog.at_level("WARNING", logger="deepm3.server"), TestClient(create_app(gru_rec(), snapshot=path)) as client:
        assert client.get("/health").json()["stored_users"] == 0
    assert "taken with another model (differs in network)" in caplog.text


# --- real sockets and concurrency ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def live_server(app) -> Iterator[str]:
    """uvicorn on a free loopback port in a thread; stopped (and joined) on exit."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()


def same_answers(got: list[dict], expected: list[dict]) -> None:
    """Equal lists; scores equal up to float rounding (batched and single calls differ in the last bits)."""
    assert [{**r, "scores": None} for r in got] == [{**r, "scores": None} for r in expected]
    assert [s for r in got for s in r.get("scores", [])] == pytest.approx(
        [s for r in expected for s in r.get("scores", [])], rel=1e-5, abs=1e-6
    )


@pytest.mark.parametrize("batching", [False, True])
def test_concurrent_requests_over_a_socket_get_the_sequential_answers(batching):
    rec = deepm3_rec()
    users = {f"c{s}": history(s, 2 * MAX_LEN) for s in range(8)}
    with live_server(create_app(rec, batching=batching)) as url:
        with ThreadPoolExecutor(8) as pool, httpx.Client(base_url=url) as client:

            def post_user(user: str) -> None:  # each user's events in order, users in parallel
                items, times = users[user]
                for start in range(0, len(items), 3):
                    chunk = {"user": user, "items": items[start : start + 3], "timestamps": times[start : start + 3]}
                    assert client.post("/events", json=chunk).status_code == 200

            list(pool.map(post_user, users))
            requests = [{"user": u, "at": t[-1] + d, "k": 8} for u, (_, t) in users.items() for d in (0, 7_200)]
            requests += [{"items": i, "timestamps": t, "at": t[-1] + 60, "k": 8} for i, t in users.values()]
            requests.append({"items": ["nope"], "timestamps": [1]})  # a bad request among good ones
            sequential = [client.post("/recommend", json=r).json() for r in requests]
            concurrent = list(pool.map(lambda r: client.post("/recommend", json=r).json(), requests * 3))
    assert "unknown item id 'nope'" in sequential[-1]["detail"]
    if batching:  # a batched score may differ in the last bits from the same request scored alone
        same_answers(concurrent, sequential * 3)
    else:
        assert concurrent == sequential * 3
    with TestClient(create_app(deepm3_rec())) as client:  # the same events posted one by one, in one thread
        for user, (items, times) in users.items():
            client.post("/events", json={"user": user, "items": items, "timestamps": times})
        one_thread = [client.post("/recommend", json=r).json() for r in requests]
    same_answers(one_thread, sequential)


def test_micro_batcher_merges_queued_requests_and_isolates_a_bad_one():
    started, release, calls = threading.Event(), threading.Event(), []

    def score(queries: list, labels: list) -> list:
        calls.append(list(queries))
        started.set()
        release.wait(10)
        if "bad" in queries:
            raise DataError(f"{labels[queries.index('bad')]}: bad input")
        return [f"{q}!" for q in queries]

    async def scenario() -> list:
        batcher = MicroBatcher(score, max_batch=3)
        first = asyncio.ensure_future(batcher.submit(["a"], ["A"]))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)  # "a" is being scored
        rest = [asyncio.ensure_future(batcher.submit(q, [f"L{q[0]}"] * len(q))) for q in (["b"], ["bad"], ["c"], ["d"])]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(first, *rest, return_exceptions=True)
        batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert results[:2] == [["a!"], ["b!"]] and results[3:] == [["c!"], ["d!"]]
    assert isinstance(results[2], DataError) and str(results[2]) == "Lbad: bad input"
    # a alone; b, bad, c merged (max_batch=3) and failed; each again alone; d in the next batch
    assert calls == [["a"], ["b", "bad", "c"], ["b"], ["bad"], ["c"], ["d"]]


@pytest.mark.slow  # a fresh interpreter importing torch and lightning: ~10 s on a busy 2-core machine
def test_command_line_serves_on_loopback_and_saves_state_on_shutdown(trained, tmp_path):
    port, snapshot = free_port(), tmp_path / "state.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepm3.serve",
            f"run={trained.run_dir}",
            f"port={port}",
            f"state.snapshot={snapshot}",
            "threads=1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 90
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        items, times, _, at = trained.history(0)
        assert httpx.post(f"{url}/events", json={"user": "a", "items": items, "timestamps": times}).status_code == 200
        served = httpx.post(f"{url}/recommend", json={"user": "a", "at": at, "k": 3}).json()
        assert httpx.get(f"{url}/model").json()["max_len"] == 5
    finally:
        process.send_signal(signal.SIGINT)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert served["state"] == "stored" and len(served["items"]) == 3
    assert f"on http://127.0.0.1:{port}" in output and "saved stored state of 1 users" in output
    assert snapshot.is_file() and "Traceback" not in output


def serve_config(*overrides: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="serve", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ((), "missing run="),
        (("run=/no/such/run",), "/no/such/run: no such run dir"),
        (("run=x", "port=70000"), "port=70000; expected 0..65535"),
        (("run=x", "limits.max_batch=0"), "limits.max_batch=0; expected a positive integer"),
        (("run=x", "state.snapshot=''"), "state.snapshot=''"),
    ],
)
def test_bad_server_options_are_one_line_errors(overrides, expected):
    cfg = serve_config(*overrides)
    with pytest.raises((DataError, ValueError)) as info:
        serve(cfg)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_the_default_config_binds_to_loopback_only():
    cfg = serve_config("run=x")
    assert cfg.host == "127.0.0.1" and cfg.state.snapshot == "auto"
