"""Reliability III (issue 30): tests for the blind spots a planted bug slipped through, and a
server that stays up for everyone. One section per item of the issue; each test fails on the
code (or the planted bug) it describes.

Networks here have random weights and tiny sizes; nothing is trained.
"""

from __future__ import annotations

import copy
import socket
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

from deepm3.checkpoint import build_net
from deepm3.errors import DataError
from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.gru4rec import GRU4RecNet
from deepm3.models.components.gru_dt import GRUDtNet
from deepm3.models.components.tisasrec import TiSASRecNet
from deepm3.recommender import Recommender
from deepm3.registry import network_class

pytest.importorskip("fastapi")
with warnings.catch_warnings():  # starlette's TestClient asks for httpx2; httpx is what it runs on here
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from deepm3.server import create_app  # noqa: E402

N = 12
MAX_LEN = 4
ITEM_IDS = [f"i{i:02d}" for i in range(N)]
DAY = 86_400


def recommender(net: torch.nn.Module, query: str = "target") -> Recommender:
    return Recommender(net, ITEM_IDS, max_len=MAX_LEN, popularity=np.arange(N + 1), device="cpu", query=query)


def next_times_reader(kind: str, query: str) -> Recommender:
    """A network that reads ``next_times`` (the query moment), with random weights."""
    torch.manual_seed(0)
    if kind == "gru_dt":
        net = GRUDtNet(N, hidden=8, gru_hidden=8, dropout=0.0, gap_features=4, time={"query": query})
    else:
        net = TiSASRecNet(N, hidden=8, blocks=1, heads=1, dropout=0.0, max_len=MAX_LEN, clip=64)
    return recommender(net, query)


ITEMS = ["i03", "i07", "i01", "i09"]
TIMES = [1_600_000_000, 1_600_000_060, 1_600_003_600, 1_600_090_000]


# -- a blind spot: time.query=last served by a model that reads next_times ---------------------


@pytest.mark.parametrize("kind", ["gru_dt", "tisasrec"])
def test_under_query_last_the_query_time_changes_nothing(kind: str) -> None:
    rec = next_times_reader(kind, "last")
    soon = rec.recommend(ITEMS, TIMES, at=TIMES[-1] + 60, k=None)
    later = rec.recommend(ITEMS, TIMES, at=TIMES[-1] + 90 * DAY, k=None)
    assert soon == later


@pytest.mark.parametrize("kind", ["gru_dt", "tisasrec"])
def test_under_query_target_the_same_models_do_see_the_query_time(kind: str) -> None:
    """The control: the model above is not time-blind, so an equal ranking under last means something."""
    rec = next_times_reader(kind, "target")
    soon = rec.recommend(ITEMS, TIMES, at=TIMES[-1] + 60, k=None)
    later = rec.recommend(ITEMS, TIMES, at=TIMES[-1] + 90 * DAY, k=None)
    assert [score for _, score in soon] != pytest.approx([score for _, score in later], rel=1e-4)


@pytest.mark.parametrize("kind", ["gru_dt", "tisasrec"])
def test_a_known_user_under_query_last_gets_the_same_list_at_any_later_time(kind: str) -> None:
    rec = next_times_reader(kind, "last")
    with TestClient(create_app(rec)) as client:
        client.post("/events", json={"user": "u", "items": ITEMS, "timestamps": TIMES})
        soon = client.post("/recommend", json={"user": "u", "at": TIMES[-1] + 60, "k": N}).json()
        later = client.post("/recommend", json={"user": "u", "at": TIMES[-1] + 90 * DAY, "k": N}).json()
    assert soon["state"] == "recomputed"
    assert (soon["items"], soon["scores"]) == (later["items"], later["scores"])


# -- a blind spot: one /recommend for users who ask for different things ------------------------


def deepm3_net() -> DeepM3Net:
    torch.manual_seed(0)
    return DeepM3Net(
        N, hidden=8, dropout=0.0, field={"width": 8, "zero_init": False}, solver={"method": "rk4", "steps": 1}
    )


def gru_net() -> GRU4RecNet:
    torch.manual_seed(0)
    return GRU4RecNet(N, hidden=8, gru_hidden=8, dropout=0.0)


USERS = {
    "a": (["i00", "i01", "i02"], [100, 200, 300]),
    "b": (["i05", "i06"], [150, 5_000]),
    "c": (["i10", "i11", "i03", "i04", "i08"], [10, 20, 30, 40, 50]),
}
MIXED = [  # users who differ in k and exclude_seen, in an order that interleaves the groups
    {"user": "a", "at": 10_000, "k": 3},
    {"user": "b", "at": 10_000, "k": 7, "exclude_seen": False},
    {"user": "c", "at": 10_000, "k": 3, "exclude_seen": False},
    {"user": "a", "at": 20_000, "k": 5},
    {"user": "b", "at": 10_000, "k": 3},
]


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


# -- a blind spot: a foreign class named like an allowed network ---------------------------------


@pytest.fixture
def lookalike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sneaky_net.SASRecNet``: a real SequentialRecommender that leaves a marker when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_net.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from deepm3.models.components.sasrec import SASRecNet as _Real\n"
        "class SASRecNet(_Real):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("sneaky_net", None)


@pytest.mark.parametrize("name", ["sneaky_net.SASRecNet", "sneaky_net.DeepM3Net", "sneaky_net.models.SASRecNet"])
def test_a_class_named_like_an_allowed_network_in_another_module_is_refused_unimported(lookalike, name) -> None:
    with pytest.raises(DataError) as info:
        network_class(name)
    assert f"{name!r} is not a SequentialRecommender this package knows" in str(info.value)
    assert not lookalike.exists() and "sneaky_net" not in sys.modules


def test_a_checkpoint_naming_a_lookalike_network_is_refused_unimported(lookalike, tmp_path: Path) -> None:
    torch.manual_seed(0)
    real = deepm3_net()
    checkpoint = tmp_path / "lookalike.ckpt"
    torch.save(
        {
            "hyper_parameters": {"net": {"_target_": "sneaky_net.SASRecNet", "hidden": 8}, "num_items": N},
            "state_dict": {f"net.{key}": value for key, value in real.state_dict().items()},
        },
        checkpoint,
    )
    with pytest.raises(DataError) as info:
        build_net(checkpoint, tmp_path, N)
    assert "'sneaky_net.SASRecNet' is not a SequentialRecommender" in str(info.value)
    assert not lookalike.exists() and "sneaky_net" not in sys.modules


# -- 1. slow clients cannot shut everyone out ------------------------------------------------------

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
from deepm3.server import Limits  # noqa: E402
from deepm3.server.guard import ConnectionLimits, guarded_protocol  # noqa: E402

QUERY = {"items": ITEMS, "timestamps": TIMES, "at": TIMES[-1] + 60, "k": 3}


@contextmanager
def guarded_server(connections: ConnectionLimits, body_timeout_s: int = 1) -> Iterator[tuple[str, int]]:
    """The app under uvicorn with the guards ``python -m deepm3.serve`` uses; ``(url, port)``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(recommender(gru_net()), limits=Limits(body_timeout_s=body_timeout_s))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", http=guarded_protocol(connections), timeout_keep_alive=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def open_socket(port: int, send: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if send:
        sock.sendall(send)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``within`` seconds; None if it stayed open."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


PARTIAL_HEAD = b"POST /recommend HTTP/1.1\r\nHost: x\r\n"
PARTIAL_BODY = b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"


def test_a_connection_that_never_completes_its_headers_is_closed() -> None:
    with guarded_server(ConnectionLimits(header_timeout=1)) as (_, port):
        idle, partial = open_socket(port), open_socket(port, PARTIAL_HEAD)
        assert closed_by_server(idle, within=5) == b""
        assert closed_by_server(partial, within=5) == b""


def test_a_trickled_body_gets_a_408_naming_the_limit() -> None:
    with guarded_server(ConnectionLimits(), body_timeout_s=1) as (_, port):
        answer = closed_by_server(open_socket(port, PARTIAL_BODY), within=5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408")
    assert b'"body: not received within 1 s (limits.body_timeout_s)"' in answer


def test_health_has_headroom_when_requests_fill_the_server() -> None:
    with guarded_server(ConnectionLimits(max_connections=2, health_headroom=2), body_timeout_s=30) as (url, port):
        stuck = [open_socket(port, PARTIAL_BODY) for _ in range(2)]  # two requests in progress, waiting for bodies
        time.sleep(0.3)
        busy = httpx.post(f"{url}/recommend", json=QUERY, timeout=5)
        health = httpx.get(f"{url}/health", timeout=5)
        for sock in stuck:
            sock.close()
    assert busy.status_code == 503 and "limits.max_connections" in busy.json()["detail"]
    assert health.status_code == 200


@pytest.mark.slow  # ~300 sockets and a few seconds of waiting
def test_hundreds_of_slow_clients_do_not_shut_out_a_normal_request() -> None:
    limits = ConnectionLimits(header_timeout=2, max_connections=16, health_headroom=4)
    with guarded_server(limits, body_timeout_s=2) as (url, port):
        slow = [open_socket(port) for _ in range(150)]  # idle sockets
        slow += [open_socket(port, PARTIAL_HEAD) for _ in range(100)]  # headers trickled
        slow += [open_socket(port, PARTIAL_BODY) for _ in range(8)]  # bodies trickled: requests in progress
        start = time.monotonic()
        with httpx.Client(base_url=url, timeout=10) as client:
            answers = [client.post("/recommend", json=QUERY) for _ in range(5)] + [client.get("/health")]
        took = time.monotonic() - start
        for sock in slow:
            sock.close()
    assert [a.status_code for a in answers] == [200] * 6
    assert took < 2, f"normal requests waited {took:.1f} s behind slow clients"


# -- 2. one snapshot at a time, off the request pool ------------------------------------------------


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


# -- 3. a cap on stored users, least recently seen dropped first ---------------------------------------


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


# -- 4. one user's large /events post does not hold up other users ------------------------------------


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


# -- 5. what a 200 from /events promises, and a killed snapshot write --------------------------------


@pytest.mark.parametrize("snapshot, promise", [(True, "in memory until the next snapshot"), (False, "memory only")])
def test_events_answer_says_plainly_what_is_durable(tmp_path: Path, snapshot: bool, promise: str) -> None:
    app = create_app(recommender(gru_net()), snapshot=tmp_path / "state.pt" if snapshot else None)
    with TestClient(app) as client:
        answer = client.post("/events", json={"user": "a", "items": ["i01"], "timestamps": [1]}).json()
    assert answer["durability"].startswith(promise)


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


# -- 6. an API key for the write endpoints ---------------------------------------------------------

KEY = "s3cret-key"
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


def serve_config(*overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.helpers.config import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="serve", overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()


def test_binding_another_address_without_a_key_is_refused_in_one_line(monkeypatch) -> None:
    from deepm3.errors import ConfigError
    from deepm3.server.cli import serve

    monkeypatch.delenv("DEEPM3_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        serve(serve_config("run=/no/such/run", "host=0.0.0.0"))
    assert str(info.value).startswith("host=0.0.0.0 is reachable from other machines") and "\n" not in str(info.value)


def test_the_key_is_read_from_the_environment_and_off_by_default(monkeypatch) -> None:
    monkeypatch.delenv("DEEPM3_API_KEY", raising=False)
    assert serve_config("run=x").api_key is None
    monkeypatch.setenv("DEEPM3_API_KEY", KEY)
    assert serve_config("run=x").api_key == KEY


# -- small ones: recommend's output, empty lists, extra input fields ---------------------------------


def recommend_config(*overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tests.helpers.config import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="recommend", overrides=["progress=false", *overrides])
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("run_arg", ["run", "run/checkpoints/best.ckpt"])
@pytest.mark.parametrize("output", ["run/item_map.csv", "run/checkpoints/recs.jsonl", "run/new/recs.csv"])
def test_recommend_refuses_to_write_into_the_run_folder(tmp_path: Path, run_arg: str, output: str) -> None:
    from deepm3.errors import ConfigError
    from deepm3.recommend import run as recommend

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    (tmp_path / "run" / "item_map.csv").write_text("item\nsku-003\n")
    source = tmp_path / "in.csv"
    source.write_text("user,item,timestamp\nu1,sku-003,100\n")
    config = recommend_config(f"run={tmp_path / run_arg}", f"input={source}", f"output={tmp_path / output}")
    with pytest.raises(ConfigError, match=r"output=.* is inside the run dir .*choose a path outside it") as info:
        recommend(config)
    assert "\n" not in str(info.value)
    assert (tmp_path / "run" / "item_map.csv").read_text() == "item\nsku-003\n"


def test_a_history_holding_every_item_gets_an_empty_list_with_its_reason(caplog) -> None:
    rec = recommender(gru_net())
    with caplog.at_level("WARNING", logger="deepm3.recommender"):
        result = rec.recommend(ITEM_IDS, list(range(N)), at=N, k=5)
    assert list(result) == [] and result.source == "model"
    assert "exclude_seen=false" in result.reason and "hold every item" in caplog.text
    assert rec.recommend(ITEM_IDS, list(range(N)), at=N, k=5, exclude_seen=False).reason is None
    assert rec.recommend(ITEM_IDS[:3], [1, 2, 3], at=N, k=5).reason is None


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


@pytest.mark.parametrize(
    "name, text",
    [
        ("in.csv", "user,item,timestamp,rating\nu1,i01,1,5\nu1,i02,2,4\nu2,i03,3,1\n"),
        (
            "in.jsonl",
            '{"user": "u1", "items": ["i01"], "timestamps": [1], "rating": 5}\n' * 1
            + '{"user": "u2", "items": ["i02"], "timestamps": [2], "rating": 4}\n',
        ),
    ],
)
def test_an_input_field_nothing_reads_is_named_once(tmp_path: Path, caplog, name: str, text: str) -> None:
    from deepm3.recommend import READERS

    path = tmp_path / name
    path.write_text(text)
    with caplog.at_level("WARNING", logger="deepm3.recommend"):
        READERS[path.suffix](path)
    warnings_ = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(warnings_) == 1 and "['rating']" in warnings_[0]


# -- small ones: training options that used to fail late, in many lines, or not at all ---------------


def train_config(*overrides: str):
    from tests.helpers.tiny_runs import compose_train

    return compose_train(list(overrides))


@pytest.mark.parametrize(
    "override, expected",
    [
        ("callbacks.early_stopping.patience=-1", "callbacks.early_stopping.patience=-1; expected a non-negative"),
        ("model.net.solver=warp", "model.net.solver='warp'; expected the solver group's mapping"),
    ],
)
def test_bad_training_options_are_one_line_before_any_work(override: str, expected: str) -> None:
    from deepm3.config import validate_config
    from deepm3.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config(train_config("model=deepm3", override))
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)


def test_a_gpu_accelerator_without_a_gpu_is_one_line(monkeypatch) -> None:
    from deepm3.config import validate_config
    from deepm3.errors import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for value in ("gpu", "cuda"):
        with pytest.raises(ConfigError) as info:
            validate_config(train_config(f"trainer.accelerator={value}"))
        assert str(info.value).startswith(f"trainer.accelerator={value}, but torch sees no GPU")
        assert "\n" not in str(info.value)
    validate_config(train_config("trainer.accelerator=cpu", "callbacks.early_stopping.patience=0"))


# -- small ones: one rule for an empty id, CSV or Parquet --------------------------------------------


@pytest.mark.parametrize("column, row", [("user_id", 1), ("item_id", 2)])
def test_parquet_refuses_an_empty_string_id_as_csv_refuses_an_empty_field(tmp_path: Path, column, row) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    from deepm3.data.sources.interactions import InteractionsFileSource

    columns = {"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": [10, 20, 30]}
    columns[column] = [value if i != row else "" for i, value in enumerate(columns[column])]
    pq.write_table(pa.table(columns), tmp_path / "clicks.parquet")
    (tmp_path / "clicks.csv").write_text(
        "user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in zip(*columns.values()))
    )
    for name in ("clicks.parquet", "clicks.csv"):
        with pytest.raises(DataError, match=rf"clicks\.\w+: .*field '{column}' is empty") as info:
            InteractionsFileSource(tmp_path / name).read()
        assert "\n" not in str(info.value)


# -- 7. fuzzing the HTTP API from its own OpenAPI schema ---------------------------------------------


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
