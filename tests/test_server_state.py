"""The server's stored user state (deepm3.server.state): one snapshot at a time off the request pool,
a cap on stored users dropping the least recently seen, users who do not block one another, and
the leftovers of a killed snapshot write."""

from __future__ import annotations

import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from deepm3.errors import DataError
from tests.helpers.tiny_recommenders import QUERY, USERS, deepm3_net, gru_net, recommender

pytest.importorskip("fastapi")
with warnings.catch_warnings():  # starlette's TestClient asks for httpx2; httpx is what it runs on here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from deepm3.server import create_app  # noqa: E402


def test_a_snapshot_runs_alone_on_its_own_thread_while_other_requests_are_answered(tmp_path: Path) -> None:
    app = create_app(recommender(gru_net()), snapshot=tmp_path / "state.pt")
    store, writing, release, threads = app.state.server.store, threading.Event(), threading.Event(), []
    save = store.save

    def slow_save(*args: object) -> tuple[int, int, float]:
        threads.append(threading.current_thread().name)
        writing.set()
        assert release.wait(10)
        return save(*args)

    store.save = slow_save
    with TestClient(app) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/snapshot")
        assert writing.wait(10)
        second = client.post("/snapshot")
        start = time.monotonic()
        answered = client.post("/recommend", json=QUERY)
        took = time.monotonic() - start
        release.set()
        assert first.result(10).status_code == 200
        store.save = save
    assert second.status_code == 409 and "one is being written now" in second.json()["detail"]
    assert answered.status_code == 200 and took < 5
    assert threads == ["deepm3-snapshot_0"]


def metric(client: TestClient, name: str) -> float:
    line = next(line for line in client.get("/metrics").text.splitlines() if line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


def test_past_max_users_the_least_recently_seen_user_is_dropped_and_counted() -> None:
    with TestClient(create_app(recommender(gru_net()), max_users=2)) as client:
        for user in ("a", "b"):
            client.post("/events", json={"user": user, "items": USERS[user][0], "timestamps": USERS[user][1]})
        assert client.post("/recommend", json={"user": "a", "at": 10_000}).json()["state"] == "recomputed"  # a seen
        client.post("/events", json={"user": "c", "items": USERS["c"][0], "timestamps": USERS["c"][1]})
        states = {u: client.post("/recommend", json={"user": u, "at": 10_000}).json()["state"] for u in "abc"}
        assert client.get("/health").json()["stored_users"] == 2
        assert metric(client, "deepm3_evicted_users_total") == 1
    assert states == {"a": "recomputed", "b": "miss", "c": "recomputed"}


def test_a_snapshot_larger_than_max_users_loads_the_most_recently_seen(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    with TestClient(create_app(recommender(gru_net()), snapshot=path)) as client:
        for user in ("a", "b", "c"):
            client.post("/events", json={"user": user, "items": USERS[user][0], "timestamps": USERS[user][1]})
    with TestClient(create_app(recommender(gru_net()), snapshot=path, max_users=2)) as client:
        states = {u: client.post("/recommend", json={"user": u, "at": 10_000}).json()["state"] for u in "abc"}
    assert states == {"a": "miss", "b": "recomputed", "c": "recomputed"}


@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_max_users_must_be_a_positive_integer(value) -> None:
    with pytest.raises(DataError, match=r"state.max_users=.*; expected a positive integer or null"):
        create_app(recommender(gru_net()), max_users=value)


def test_a_user_whose_events_are_being_computed_does_not_block_reading_another_user() -> None:
    app = create_app(recommender(deepm3_net()))
    store = app.state.server.store
    store.append([("b", np.array([1, 2]), np.array([10, 20]))], ["body"])
    inside, release = threading.Event(), threading.Event()
    advance = store.net.advance

    def slow_advance(*args: object) -> torch.Tensor:
        inside.set()
        assert release.wait(10)
        return advance(*args)

    store.net.advance = slow_advance
    with ThreadPoolExecutor(1) as pool:
        posting = pool.submit(store.append, [("a", np.array([3, 4]), np.array([30, 40]))], ["body"])
        assert inside.wait(10)
        start = time.monotonic()
        record = store.get("b")
        took = time.monotonic() - start
        release.set()
        posting.result(10)
    store.net.advance = advance
    assert record is not None and record.count == 2 and took < 1


def test_a_long_post_releases_the_network_between_chunks() -> None:
    store = create_app(recommender(deepm3_net())).state.server.store
    store.ADVANCE_CHUNK = 4
    taken = []

    class CountingLock:
        def __enter__(self) -> None:
            taken.append(1)

        def __exit__(self, *exc: object) -> None:
            pass

    store._model_lock = CountingLock()
    store.append([("a", np.arange(1, 11), np.arange(10, 110, 10))], ["body"])
    assert len(taken) == 3  # 10 events, 4 per chunk


def test_a_temporary_file_left_by_a_killed_snapshot_write_is_removed_at_start(tmp_path: Path, caplog) -> None:
    leftover = tmp_path / ".state.pt.k3j9x_ab.tmp"
    leftover.write_bytes(b"half a snapshot")
    other = tmp_path / ".other.pt.k3j9x_ab.tmp"
    other.write_bytes(b"not ours")
    with (
        caplog.at_level("WARNING", logger="deepm3.server"),
        TestClient(create_app(recommender(gru_net()), snapshot=tmp_path / "state.pt")),
    ):
        pass
    assert not leftover.exists() and other.exists()
    assert "left by a snapshot write that did not finish" in caplog.text
