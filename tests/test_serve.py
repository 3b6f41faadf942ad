"""Serving (issue 7): a trained run answers "what next, for this history, at this moment?".

Two tiny runs are trained once for the module (DeepM3 on 20 items, GRU4Rec on 24); every
test then loads what they left on disk, as a user would.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

import deepm3
import deepm3.history
import deepm3.recommender
import deepm3.serve
from deepm3.data.samples import eval_samples
from deepm3.errors import ConfigError, DataError
from deepm3.recommend import main as recommend_main
from deepm3.recommend import run as recommend_cli
from deepm3.recommender import Recommender
from tests.helpers.config import CONF_DIR
from tests.helpers.serve_fixtures import MAX_LEN, TrainedRun, train_tiny

YEAR = 365 * 86_400


@pytest.fixture(scope="module")
def deepm3_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    return train_tiny(tmp_path_factory.mktemp("serve-deepm3"), "model.net.hidden=16", "model.net.field.width=16")


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    return train_tiny(
        tmp_path_factory.mktemp("serve-gru4rec"),
        "model=gru4rec",
        "model.net.hidden=16",
        "model.net.gru_hidden=16",
        items=24,
    )


@pytest.fixture(scope="module")
def rec(deepm3_run: TrainedRun) -> Recommender:
    return Recommender.load(deepm3_run.run_dir, device="cpu")


def in_memory_scores(run: TrainedRun) -> torch.Tensor:
    """``[users, N + 1]`` test-time scores of the module that produced the run's test metrics."""
    samples = eval_samples(run.data, "test", MAX_LEN)
    batch = {key: torch.from_numpy(getattr(samples, key)) for key in ("items", "times", "next_times")}
    with torch.no_grad():
        return run.module.net.predict(batch)


def raw_test_inputs(run: TrainedRun) -> tuple[list, list, list, list]:
    """Every user's test input in raw form: items, timestamps, targets, query times."""
    rows = [run.history(user) for user in range(run.data.num_users)]
    return tuple(list(column) for column in zip(*rows))  # type: ignore[return-value]


def copy_run(run: TrainedRun, dest: Path) -> Path:
    return Path(shutil.copytree(run.run_dir, dest / "run"))


def error_of(call, *args, **kwargs) -> str:
    """The DataError message of ``call``, checked to be one line."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- round trip and id mapping ---------------------------------------------------------------


def test_loaded_run_scores_every_item_exactly_like_the_in_memory_model(deepm3_run, rec):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    expected = in_memory_scores(deepm3_run)
    results = rec.recommend_batch(items, times, at=ats, k=None, exclude_seen=False)
    for user, result in enumerate(results):
        served = dict(result)
        assert [served[raw] for raw in deepm3_run.data.item_ids] == expected[user, 1:].tolist()


def test_served_ranks_reproduce_the_runs_test_ranks(deepm3_run, rec):
    items, times, targets, ats = raw_test_inputs(deepm3_run)
    results = rec.recommend_batch(items, times, at=ats, k=None, exclude_seen=False)  # runs rank every item
    served = []
    for target, result in zip(targets, results):
        target_score = dict(result)[target]
        served.append(sum(1 for raw, score in result if raw != target and score >= target_score))
    rows = pd.read_csv(deepm3_run.run_dir / "test_users.csv", dtype={"user": str}).set_index("user")
    assert served == rows.loc[deepm3_run.data.user_ids.tolist(), "rank"].tolist()


def test_recommendations_are_the_best_unseen_items_as_raw_ids_best_first(deepm3_run, rec):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    scores = in_memory_scores(deepm3_run)[0].clone()
    scores[0] = -torch.inf
    scores[[int(np.flatnonzero(deepm3_run.data.item_ids == raw)[0]) + 1 for raw in items[0]]] = -torch.inf
    best = scores.argsort(descending=True)[:5].tolist()
    result = rec.recommend(items[0], times[0], at=ats[0], k=5)
    assert [raw for raw, _ in result] == [deepm3_run.data.item_ids[i - 1] for i in best]
    assert [score for _, score in result] == sorted((score for _, score in result), reverse=True)
    assert result.source == "model"


def test_integer_item_ids_match_their_string_form(deepm3_run, rec):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    number = {raw: int(raw.removeprefix("sku-")) for raw in rec.item_ids}  # raw ids as MovieLens has them: "50"
    numeric = Recommender(rec.net, [str(number[raw]) for raw in rec.item_ids], max_len=MAX_LEN, device="cpu")
    as_ints = numeric.recommend([number[raw] for raw in items[0]], times[0], at=ats[0], k=3)
    as_strings = rec.recommend(items[0], times[0], at=ats[0], k=3)
    assert as_ints == [(str(number[raw]), score) for raw, score in as_strings]


# --- exclude_seen, k, query time -------------------------------------------------------------


def test_exclude_seen_leaves_out_exactly_the_history(deepm3_run, rec):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    kept = rec.recommend(items[0], times[0], at=ats[0], k=None)
    everything = rec.recommend(items[0], times[0], at=ats[0], k=None, exclude_seen=False)
    assert {raw for raw, _ in kept} == set(rec.item_ids) - set(items[0])
    assert {raw for raw, _ in everything} == set(rec.item_ids)


def test_k_caps_the_list_and_must_be_positive(deepm3_run, rec):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    assert len(rec.recommend(items[0], times[0], at=ats[0], k=3)) == 3
    assert len(rec.recommend(items[0], times[0], at=ats[0], k=1000)) == rec.num_items - len(set(items[0]))
    assert "k=0" in error_of(rec.recommend, items[0], times[0], at=ats[0], k=0)


def test_query_time_changes_deepm3s_ranking(deepm3_run, rec):
    items, times, _, _ = raw_test_inputs(deepm3_run)
    soon = rec.recommend(items[0], times[0], at=times[0][-1] + 60, k=None)
    later = rec.recommend(items[0], times[0], at=times[0][-1] + 3 * YEAR, k=None)
    assert rec.uses_time
    assert [raw for raw, _ in soon] != [raw for raw, _ in later]


def test_query_time_does_not_change_gru4recs_ranking(gru_run):
    gru = Recommender.load(gru_run.run_dir, device="cpu")
    items, times, _, _ = raw_test_inputs(gru_run)
    soon = gru.recommend(items[0], times[0], at=times[0][-1] + 60, k=None)
    later = gru.recommend(items[0], times[0], at=times[0][-1] + 3 * YEAR, k=None)
    assert not gru.uses_time
    assert list(soon) == list(later)


def test_query_time_defaults_to_now(deepm3_run, rec, monkeypatch):
    items, times, _, _ = raw_test_inputs(deepm3_run)
    now = times[0][-1] + 1_000_000
    monkeypatch.setattr(deepm3.recommender, "time", SimpleNamespace(time=lambda: now + 0.7))
    assert list(rec.recommend(items[0], times[0], k=None)) == list(rec.recommend(items[0], times[0], at=now, k=None))


def test_batch_equals_one_by_one(deepm3_run, rec):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    batch = rec.recommend_batch(items[:5], times[:5], at=ats[:5], k=4, batch_size=2)
    single = [rec.recommend(i, t, at=a, k=4) for i, t, a in zip(items[:5], times[:5], ats[:5])]
    assert [[raw for raw, _ in r] for r in batch] == [[raw for raw, _ in r] for r in single]
    assert [s for r in batch for _, s in r] == pytest.approx([s for r in single for _, s in r], rel=1e-5)


# --- bad input -------------------------------------------------------------------------------


def test_unknown_item_is_an_error_that_names_it_and_the_way_out(deepm3_run, rec):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    message = error_of(rec.recommend, ["sku-999", *items[0]], [times[0][0], *times[0]], at=ats[0])
    assert "unknown item id 'sku-999'" in message and "unknown_items='skip'" in message


def test_unknown_item_can_be_skipped_and_reported(deepm3_run, rec, caplog):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    with caplog.at_level(logging.WARNING, logger="deepm3.recommender"):
        skipped = rec.recommend(
            [*items[0][:3], "sku-999", *items[0][3:]],
            [*times[0][:3], times[0][3], *times[0][3:]],
            at=ats[0],
            unknown_items="skip",
        )
    assert list(skipped) == list(rec.recommend(items[0], times[0], at=ats[0]))
    assert skipped.skipped == ["sku-999"]
    assert "skipped 1 unknown item ids" in caplog.text


@pytest.mark.parametrize(
    "items, times, at, expected",
    [
        (
            ["sku-003", "sku-010"],
            [200, 100],
            300,
            "time order (oldest first): timestamps[1]=100 is earlier than timestamps[0]=200",
        ),
        (["sku-003", "sku-010"], [100, "soon"], 300, "timestamps[1]='soon' is not a number"),
        (["sku-003", "sku-010"], [100, None], 300, "timestamps[1]=None is not a number"),
        (["sku-003", "sku-010"], [100, float("nan")], 300, "not a finite number"),
        (["sku-003", "sku-010"], [100, 200], 150, "at=150 is earlier than the last event (timestamps[1]=200)"),
        (["sku-003", "sku-010"], [100, 200], "noon", "at='noon' is not a number"),
        (["sku-003", "sku-010"], [100, 4_000_000_000], None, "is earlier than the last event"),
        (["sku-003", "sku-010"], [100], 300, "2 items but 1 timestamps"),
        ("sku-003", [100], 300, "items='sku-003'; expected a list"),
    ],
    ids=[
        "unsorted",
        "non-numeric",
        "missing",
        "nan",
        "at-before-last",
        "at-non-numeric",
        "now-before-last",
        "lengths",
        "string-history",
    ],
)
def test_bad_history_is_a_one_line_error(rec, items, times, at, expected):
    assert expected in error_of(rec.recommend, items, times, at=at)


def test_batch_errors_name_the_history(rec):
    message = error_of(rec.recommend_batch, [["sku-003"], ["sku-003", "sku-010"]], [[1], [5, 2]], names=["u1", "u2"])
    assert message.startswith("u2: timestamps must be in time order")


def test_numeric_strings_and_floats_are_seconds(rec):
    as_numbers = rec.recommend(["sku-003", "sku-010"], [100, 200], at=300)
    assert list(rec.recommend(["sku-003", "sku-010"], ["100", 200.9], at="300")) == list(as_numbers)


def training_counts(run: TrainedRun) -> Counter:
    """Slow obvious reference: item events in each user's training prefix (all but the last two)."""
    data = run.data
    counts: Counter = Counter()
    for user in range(data.num_users):
        counts.update(data.item_ids[data.items[data.offsets[user] : data.offsets[user + 1] - 2] - 1].tolist())
    return counts


def popularity_order(run: TrainedRun) -> list[tuple[str, float]]:
    counts = training_counts(run)
    ranked = sorted(range(len(run.data.item_ids)), key=lambda i: -counts[run.data.item_ids[i]])  # stable: index order
    return [(run.data.item_ids[i], float(counts[run.data.item_ids[i]])) for i in ranked]


def test_empty_history_gets_training_popularity_and_says_so(deepm3_run, rec, caplog):
    with caplog.at_level(logging.WARNING, logger="deepm3.recommender"):
        result = rec.recommend([], [], k=5)
    assert result.source == "popularity"
    assert list(result) == popularity_order(deepm3_run)[:5]
    assert "most popular training items" in caplog.text


def test_history_of_only_unknown_items_falls_back_to_popularity(deepm3_run, rec):
    result = rec.recommend(["sku-999"], [100], at=200, k=3, unknown_items="skip")
    assert (result.source, result.skipped) == ("popularity", ["sku-999"])
    assert list(result) == popularity_order(deepm3_run)[:3]


def test_popularity_is_recomputed_from_processed_data_for_older_run_dirs(deepm3_run, tmp_path):
    run_dir = copy_run(deepm3_run, tmp_path)
    (run_dir / "item_popularity.csv").unlink()
    assert list(Recommender.load(run_dir, device="cpu").recommend([], [], k=None)) == popularity_order(deepm3_run)


def test_empty_history_without_any_popularity_is_an_error(deepm3_run, tmp_path):
    run_dir = copy_run(deepm3_run, tmp_path)
    (run_dir / "item_popularity.csv").unlink()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["data"]["data_dir"] = str(tmp_path / "gone")
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert "needs popularity counts" in error_of(Recommender.load(run_dir, device="cpu").recommend, [], [])


def test_checkpoint_from_another_dataset_is_refused(deepm3_run, gru_run, tmp_path):
    run_dir = copy_run(deepm3_run, tmp_path)
    best = run_dir / "checkpoints" / Path(deepm3_run.metrics["best_checkpoint"]).name
    shutil.copy(gru_run.metrics["best_checkpoint"], best)
    message = error_of(Recommender.load, best)
    assert "trained on 24 items" in message and "lists 20" in message and "another dataset" in message


def test_popularity_file_from_another_dataset_is_refused(deepm3_run, gru_run, tmp_path):
    run_dir = copy_run(deepm3_run, tmp_path)
    shutil.copy(gru_run.run_dir / "item_popularity.csv", run_dir / "item_popularity.csv")
    assert "different datasets" in error_of(Recommender.load, run_dir)


class Payload:
    """Anything a plain pickle would reconstruct by running code."""


def test_checkpoint_that_would_run_code_is_refused(deepm3_run, tmp_path):
    run_dir = copy_run(deepm3_run, tmp_path)
    pickled = run_dir / "checkpoints" / "pickled.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": Payload()}}, pickled)
    assert "not a loadable weights-only checkpoint" in error_of(Recommender.load, pickled)
    named = run_dir / "checkpoints" / "named.ckpt"
    torch.save(
        {"state_dict": {}, "hyper_parameters": {"num_items": 20, "net": {"_target_": "os.system", "command": "true"}}},
        named,
    )
    assert "'os.system' is not a SequentialRecommender" in error_of(Recommender.load, named)


def test_paths_that_are_not_runs_are_refused(deepm3_run, tmp_path):
    assert "no such run dir" in error_of(Recommender.load, tmp_path / "missing")
    loose = Path(shutil.copy(deepm3_run.metrics["best_checkpoint"], tmp_path / "loose.ckpt"))
    assert "inside <run dir>/checkpoints/" in error_of(Recommender.load, loose)
    assert "no checkpoint in checkpoints/" in error_of(Recommender.load, tmp_path)
    run_dir = copy_run(deepm3_run, tmp_path)
    (run_dir / "item_map.csv").unlink()
    assert "no item_map.csv" in error_of(Recommender.load, run_dir)


def test_checkpoint_path_loads_that_checkpoint(deepm3_run, rec):
    last = Recommender.load(deepm3_run.run_dir / "checkpoints" / "last.ckpt", device="cpu")
    assert (last.max_len, last.item_ids.tolist()) == (MAX_LEN, rec.item_ids.tolist())


def test_auto_device_is_the_gpu_when_there_is_one(deepm3_run):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert Recommender.load(deepm3_run.run_dir).device.type == expected


def test_import_deepm3_stays_light():
    code = "import sys, deepm3; assert 'torch' not in sys.modules, 'import deepm3 pulled in torch'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_recommender_is_exported_from_the_package():
    assert deepm3.Recommender is Recommender


def test_deepm3_serve_still_exports_the_python_api():
    """The API moved to deepm3.recommender (its input checks to deepm3.history); code importing
    it from deepm3.serve keeps working."""
    for name in deepm3.serve.__all__:
        home = deepm3.history if hasattr(deepm3.history, name) else deepm3.recommender
        assert getattr(deepm3.serve, name) is getattr(home, name), name
    assert deepm3.serve.Recommender is Recommender


# --- command line ----------------------------------------------------------------------------


def recommend_config(*overrides: str):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="recommend", overrides=["progress=false", *overrides])
    finally:
        GlobalHydra.instance().clear()


def test_cli_csv_in_csv_out_matches_the_api(deepm3_run, rec, tmp_path):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    source = tmp_path / "histories.csv"
    rows = [
        (deepm3_run.data.user_ids[u], raw, t, ats[u] if j == 0 else "")
        for u in (0, 1)
        for j, (raw, t) in enumerate(zip(items[u], times[u]))
    ]
    rows.insert(2, rows.pop(len(items[0])))  # users' rows may interleave; each user's stay in time order
    rows.append(("newcomer", "", "", ""))
    pd.DataFrame(rows, columns=["user", "item", "timestamp", "at"]).to_csv(source, index=False)
    summary = recommend_cli(
        recommend_config(
            f"run={deepm3_run.run_dir}", f"input={source}", f"output={tmp_path / 'recs.csv'}", "k=3", "device=cpu"
        )
    )
    out = pd.read_csv(tmp_path / "recs.csv", dtype={"user": str, "item": str})
    assert list(out.columns) == ["user", "rank", "item", "score", "source"]
    for u in (0, 1):
        mine = out[out.user == deepm3_run.data.user_ids[u]]
        expected = rec.recommend(items[u], times[u], at=ats[u], k=3)
        assert mine.item.tolist() == [raw for raw, _ in expected]
        assert mine.score.tolist() == pytest.approx([score for _, score in expected], rel=1e-5)  # batch of 2 vs 1
        assert mine["rank"].tolist() == [1, 2, 3] and set(mine.source) == {"model"}
    assert list(out[out.user == "newcomer"].item) == [raw for raw, _ in popularity_order(deepm3_run)[:3]]
    assert summary == {"users": 3, "popularity": 1, "skipped_items": 0}


def test_cli_jsonl_in_jsonl_out_with_a_global_query_time(deepm3_run, rec, tmp_path):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    source = tmp_path / "histories.jsonl"
    at = max(times[0][-1], times[1][-1]) + YEAR
    lines = [
        {"user": "a", "items": items[0] + ["sku-999"], "timestamps": times[0] + [times[0][-1]], "at": ats[0]},
        {"user": "b", "items": items[1], "timestamps": times[1]},
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    recommend_cli(
        recommend_config(
            f"run={deepm3_run.run_dir}",
            f"input={source}",
            f"output={tmp_path / 'recs.jsonl'}",
            "k=4",
            f"at={at}",
            "unknown_items=skip",
            "device=cpu",
        )
    )
    out = [json.loads(line) for line in (tmp_path / "recs.jsonl").read_text().splitlines()]
    assert [o["user"] for o in out] == ["a", "b"]
    assert out[0]["skipped_items"] == ["sku-999"]
    for o, u in zip(out, (0, 1)):
        expected = rec.recommend(items[u], times[u], at=at, k=4)
        assert o["items"] == [raw for raw, _ in expected] and o["source"] == "model"
        assert o["scores"] == pytest.approx([score for _, score in expected], rel=1e-5)  # batch of 2 vs 1


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("h.csv", "user,item\nu1,sku-003\n", "missing column(s) ['timestamp']"),
        (
            "h.csv",
            "user,item,timestamp\nu1,sku-003,100\nu1,sku-010,later\n",
            "h.csv line 3: timestamp='later' is not a number",
        ),
        (
            "h.csv",
            "user,item,timestamp\nu1,sku-003,100\nu1,sku-010,50\n",
            "user 'u1': timestamps must be in time order",
        ),
        ("h.csv", "user,item,timestamp\nu1,sku-003,\n", "h.csv line 2: give both item and timestamp"),
        ("h.csv", "user,item,timestamp,at\nu1,sku-003,100,200\nu1,sku-010,150,300\n", "line 3: at=300 differs"),
        ("h.csv", "user,item,timestamp,at\nu1,sku-003,100,50\n", "user 'u1': at=50 is earlier than the last event"),
        ("h.csv", "user,item,timestamp\nu1,sku-999,100\n", "user 'u1': unknown item id 'sku-999'"),
        ("h.csv", "", "not a readable CSV"),
        ("h.jsonl", '{"user": "u1", "items": ["sku-003"]}\n', 'h.jsonl line 1: expected an object with "user"'),
        ("h.jsonl", "{not json\n", "h.jsonl line 1: not valid JSON"),
        ("h.jsonl", '{"user": "u1", "items": [1.5], "timestamps": [1]}\n', "items[0]=1.5 is not an item id"),
        (
            "h.jsonl",
            '{"user": "u1", "items": ["sku-003"], "timestamps": ["x"]}\n',
            "line 1: timestamps[0]='x' is not a number",
        ),
        (
            "h.jsonl",
            '{"user": "u1", "items": [], "timestamps": []}\n' * 2,
            "h.jsonl line 2: user 'u1' is already on line 1",
        ),
        ("h.jsonl", "\n", "no histories"),
    ],
    ids=[
        "csv-columns",
        "csv-timestamp",
        "csv-unsorted",
        "csv-half-row",
        "csv-two-ats",
        "csv-at-early",
        "csv-unknown",
        "csv-empty",
        "jsonl-keys",
        "jsonl-syntax",
        "jsonl-item-type",
        "jsonl-timestamp",
        "jsonl-duplicate",
        "jsonl-empty",
    ],
)
def test_cli_bad_input_is_a_one_line_error(deepm3_run, tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    config = recommend_config(
        f"run={deepm3_run.run_dir}", f"input={tmp_path / name}", f"output={tmp_path / 'o.csv'}", "device=cpu"
    )
    assert expected in error_of(recommend_cli, config)
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], "missing run=, input=, output="),
        (["run=r", "input=h.txt", "output=o.csv"], "input=h.txt: expected a file ending in one of ['.csv', '.jsonl']"),
        (["run=r", "input=h.csv", "output=o.parquet"], "output=o.parquet: expected a file ending in"),
    ],
)
def test_cli_bad_arguments_are_config_errors(overrides, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        recommend_cli(recommend_config(*overrides))


def run_main(monkeypatch, cwd: Path, *args: str) -> None:
    """``python -m deepm3.recommend *args``, in this process (a subprocess would re-import torch)."""
    GlobalHydra.instance().clear()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["deepm3.recommend", *args])
    try:
        recommend_main()
    finally:
        GlobalHydra.instance().clear()


def test_cli_entry_point_finds_its_packaged_config_and_writes_only_the_output(deepm3_run, tmp_path, monkeypatch):
    items, times, _, ats = raw_test_inputs(deepm3_run)
    source = tmp_path / "h.jsonl"
    source.write_text(json.dumps({"user": "a", "items": items[0], "timestamps": times[0], "at": ats[0]}) + "\n")
    run_main(monkeypatch, tmp_path, f"run={deepm3_run.run_dir}", "input=h.jsonl", "output=o.csv", "k=2", "device=cpu")
    assert len(pd.read_csv(tmp_path / "o.csv")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.jsonl", "o.csv"]


def test_cli_entry_point_exits_with_one_line_on_bad_input(tmp_path, monkeypatch, capsys):
    (tmp_path / "h.jsonl").write_text("{}\n")
    with pytest.raises(SystemExit) as exit_info:
        run_main(monkeypatch, tmp_path, f"run={tmp_path / 'nope'}", "input=h.jsonl", "output=o.csv")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        'error: h.jsonl line 1: expected an object with "user", "items", "timestamps" (and optional "at")'
    ]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_scores_match_cpu_scores(deepm3_run, rec):
    gpu = Recommender.load(deepm3_run.run_dir, device="cuda")
    items, times, _, ats = raw_test_inputs(deepm3_run)
    on_gpu = gpu.recommend_batch(items, times, at=ats, k=None, exclude_seen=False)
    on_cpu = rec.recommend_batch(items, times, at=ats, k=None, exclude_seen=False)
    for a, b in zip(on_gpu, on_cpu):
        assert dict(a) == pytest.approx(dict(b), rel=1e-4, abs=1e-5)
