"""Reliability II (issue 14): no lost data under concurrency, checkpoints that cannot run code,
every bad input one clear line. One section per problem of the issue; each test failed before
its fix. The command-line probes of every bad input are in ``tests/test_bad_inputs.py``.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from deepm3.data.cache import load_or_build
from deepm3.data.download import ensure_extracted, safe_extract_zip
from deepm3.data.preprocess import PreprocessConfig
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.fields import to_unix_seconds
from deepm3.data.sources.interactions import InteractionsFileSource
from deepm3.errors import ConfigError, DataError, user_error
from deepm3.history import to_seconds
from deepm3.io import write_atomic, write_json
from deepm3.recommender import Recommender
from deepm3.train import run
from tests.helpers.concurrency_workers import extract_worker, fetch_worker
from tests.helpers.config import CONF_DIR
from tests.helpers.http_files import served
from tests.helpers.serve_fixtures import TrainedRun, train_tiny
from tests.helpers.spine_fixtures import TinySource
from tests.helpers.tiny_runs import tiny_config

NET = ("model.net.hidden=16", "model.net.field.width=16")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One tiny DeepM3 run on ``ServeSource`` (20 items), as a user would have on disk."""
    return train_tiny(tmp_path_factory.mktemp("rel2-run"), *NET)


def copy_run(run: TrainedRun, dest: Path) -> Path:
    return Path(shutil.copytree(run.run_dir, dest / "run"))


def best_of(run_dir: Path) -> Path:
    return next((run_dir / "checkpoints").glob("best-*.ckpt"))


def one_line(exc: BaseException) -> str:
    error = user_error(exc)
    assert error is not None, f"not a user error: {type(exc).__name__}: {exc}"
    message = str(error)
    assert "\n" not in message
    return message


# -- 1. concurrent download and extraction ----------------------------------------------------


def big_archive(path: Path) -> bytes:
    """An ``ml-1m.zip`` whose ratings.dat (~3 MB) takes a while to extract."""
    rng = np.random.default_rng(0)
    users, items, stamps = (
        rng.integers(1, 6000, 150_000),
        rng.integers(1, 4000, 150_000),
        rng.integers(9e8, 1e9, 150_000),
    )
    ratings = "".join(f"{u}::{i}::5::{t}\n" for u, i, t in zip(users, items, stamps)).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-1m/movies.dat", "1::Toy Story (1995)::Animation\n")
        zf.writestr("ml-1m/ratings.dat", ratings)
        zf.writestr("ml-1m/users.dat", "1::F::1::10::48067\n")
    return ratings


def run_processes(target, args: list[tuple]) -> list[tuple]:
    context = multiprocessing.get_context("spawn")  # children import only deepm3.data.download
    barrier, results = context.Barrier(len(args)), context.Queue()
    processes = [context.Process(target=target, args=(barrier, results, *a)) for a in args]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=240) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return sorted(outcomes)


def visible(folder: Path) -> list[str]:
    """What a user sees in a folder: no lock files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def test_processes_extracting_one_archive_at_once_all_get_the_whole_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    ratings = big_archive(raw / "ml-1m.zip")
    whole = ("ok", len(ratings), hashlib.sha256(ratings).hexdigest())
    member = raw / "ml-1m" / "ratings.dat"
    for _ in range(2):  # the race lost data in most trials; two rounds of four processes
        shutil.rmtree(raw / "ml-1m", ignore_errors=True)
        outcomes = run_processes(extract_worker, [(str(member), str(raw / "ml-1m.zip"))] * 4)
        assert outcomes == [whole] * 4
        assert member.read_bytes() == ratings
        assert visible(raw) == ["ml-1m", "ml-1m.zip"]
        assert sorted(p.name for p in (raw / "ml-1m").iterdir()) == ["movies.dat", "ratings.dat", "users.dat"]


def test_processes_downloading_one_archive_at_once_fetch_it_once(tmp_path: Path) -> None:
    body = tmp_path / "served.zip"
    ratings = big_archive(body)
    archive = body.read_bytes()
    raw = tmp_path / "raw"
    with served({"/ml-1m.zip": archive}) as site:
        outcomes = run_processes(
            fetch_worker,
            [
                (
                    str(raw / "ml-1m" / "ratings.dat"),
                    str(raw / "ml-1m.zip"),
                    f"{site.url}/ml-1m.zip",
                    "md5:" + hashlib.md5(archive).hexdigest(),
                )
            ]
            * 3,
        )
    assert outcomes == [("ok", len(ratings), hashlib.sha256(ratings).hexdigest())] * 3
    assert len(site.requests) == 1
    assert (raw / "ml-1m.zip").read_bytes() == archive
    assert visible(raw) == ["ml-1m", "ml-1m.zip"]


# -- 2. recommend never overwrites its input -----------------------------------------------------


def recommend_config(*overrides: str):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            return compose(config_name="recommend", overrides=["progress=false", *overrides])
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("link", [False, True], ids=["same-path", "symlink"])
def test_recommend_refuses_to_write_over_its_input(tmp_path: Path, link: bool) -> None:
    from deepm3.recommend import run as recommend

    source = tmp_path / "x.csv"
    source.write_text("user,item,timestamp\nu1,sku-003,100\n")
    output = source
    if link:
        output = tmp_path / "y.csv"
        output.symlink_to(source)
    with pytest.raises(ConfigError, match=r"output=.*is the input file") as info:
        recommend(recommend_config(f"run={tmp_path / 'no-run'}", f"input={source}", f"output={output}"))
    one_line(info.value)
    assert source.read_text() == "user,item,timestamp\nu1,sku-003,100\n"


# -- 3. Parquet: nulls and wrong types are errors, as in CSV ---------------------------------------

PARQUET_ROWS = {"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "timestamp": [10, 20, 30]}


def parquet(tmp_path: Path, **columns) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "clicks.parquet"
    pq.write_table(pa.table({**PARQUET_ROWS, **columns}), path)
    return path


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        ({"user_id": ["a", None, "c"]}, r"clicks\.parquet: row 1: field 'user_id' is empty \(null\)"),
        ({"item_id": ["x", "y", None]}, r"clicks\.parquet: row 2: field 'item_id' is empty \(null\)"),
        ({"timestamp": [10, None, 30]}, r"clicks\.parquet: row 1: field 'timestamp' is empty \(null\)"),
        ({"item_id": [1.0, 2.0, 3.0]}, r"column 'item_id' holds double values; expected string or integer ids"),
        ({"timestamp": [True, False, True]}, r"column 'timestamp' holds bool values; expected integer"),
        ({"item_id": [[0], [1], [2]]}, r"column 'item_id' holds list<.*> values; expected string or integer ids"),
        ({"user_id": [{"a": 1}, {"a": 2}, {"a": 3}]}, r"column 'user_id' holds struct<.*> values"),
    ],
    ids=["null-user", "null-item", "null-timestamp", "float-items", "bool-timestamps", "list-items", "struct-users"],
)
def test_parquet_nulls_and_wrong_types_are_errors(tmp_path: Path, columns: dict, expected: str) -> None:
    with pytest.raises(DataError, match=expected) as info:
        InteractionsFileSource(parquet(tmp_path, **columns)).read()
    one_line(info.value)


def test_parquet_integer_and_dictionary_ids_are_read_as_their_text(tmp_path: Path) -> None:
    import pyarrow as pa

    path = parquet(
        tmp_path,
        user_id=pa.array(["a", "b", "c"]).dictionary_encode(),
        item_id=[7, 8, 9],
        timestamp=pa.array([10, 20, 30], pa.uint32()),
    )
    table = InteractionsFileSource(path).read()
    assert table.to_dict("list") == {"user": ["a", "b", "c"], "item": ["7", "8", "9"], "timestamp": [10, 20, 30]}


def test_any_table_with_a_missing_id_is_refused_naming_the_row() -> None:
    frame = pd.DataFrame({"user": ["a", None], "item": ["x", "y"], "timestamp": [1, 2]})
    with pytest.raises(DataError, match=r"src: row 1: field 'user' is empty"):
        validate_interactions(frame, "src")


# -- 4. atomic writes honour the umask and keep a file's mode -------------------------------------


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    try:
        yield set_mask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path: Path, umask, mask: int) -> None:
    umask(mask)
    write_json(tmp_path / "new.json", {"a": 1})
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o666 & ~mask


def test_rewriting_a_file_keeps_its_mode(tmp_path: Path, umask) -> None:
    target = tmp_path / "shared.csv"
    target.write_text("old")
    target.chmod(0o640)
    umask(0o077)
    write_atomic(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_the_processed_data_cache_is_readable_by_others_under_umask_022(tmp_path: Path, umask) -> None:
    source = TinySource(tmp_path / "raw")
    _, folder = load_or_build(source, PreprocessConfig(), tmp_path / "cache")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o644}


def test_extracted_files_honour_the_umask(tmp_path: Path, umask) -> None:
    archive = tmp_path / "a.zip"
    big_archive(archive)
    safe_extract_zip(archive, tmp_path / "raw")
    assert stat.S_IMODE((tmp_path / "raw" / "ml-1m").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "raw" / "ml-1m" / "ratings.dat").stat().st_mode) == 0o644


# -- 5. a checkpoint's _target_ is looked up, never imported ------------------------------------


@pytest.fixture
def sneaky_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module on sys.path that leaves a marker file when it is imported."""
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_net.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Net:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("sneaky_net", None)


def retarget(checkpoint: Path, dest: Path, target: str) -> Path:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["hyper_parameters"]["net"]["_target_"] = target
    torch.save(saved, dest)
    return dest


def test_serving_a_checkpoint_that_names_any_module_imports_nothing(trained, tmp_path, sneaky_module) -> None:
    run_dir = copy_run(trained, tmp_path)
    for target in ("sneaky_net.Net", "this.Zen"):
        checkpoint = retarget(best_of(run_dir), run_dir / "checkpoints" / "named.ckpt", target)
        with pytest.raises(DataError) as info:
            Recommender.load(checkpoint, device="cpu")
        assert f"{target!r} is not a SequentialRecommender" in one_line(info.value)
    assert not sneaky_module.exists() and "sneaky_net" not in sys.modules and "this" not in sys.modules


def test_resuming_from_a_checkpoint_that_names_any_module_imports_nothing(trained, tmp_path, sneaky_module) -> None:
    checkpoint = retarget(best_of(trained.run_dir), tmp_path / "named.ckpt", "sneaky_net.Net")
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *NET, f"ckpt_path={checkpoint}")
    with pytest.raises(Exception) as info:
        run(cfg, output_dir=tmp_path / "run")
    assert "sneaky_net.Net" in one_line(info.value)
    assert not sneaky_module.exists() and "sneaky_net" not in sys.modules


def test_every_packaged_model_is_a_known_network() -> None:
    import yaml

    from deepm3.registry import known_networks, network_class

    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        target = yaml.safe_load(path.read_text())["net"]["_target_"]
        assert target in known_networks(), path.name
        assert network_class(target).__name__ == target.rsplit(".", 1)[1]
    with pytest.raises(DataError, match="'os.system' is not a SequentialRecommender"):
        network_class("os.system")


# -- 6. a checkpoint knows its dataset -------------------------------------------------------------


def test_checkpoints_record_the_item_map_they_were_trained_on(trained) -> None:
    from deepm3.data.processed import item_map_digest

    for checkpoint in (trained.run_dir / "checkpoints").glob("*.ckpt"):
        stamp = torch.load(checkpoint, map_location="cpu", weights_only=True)["deepm3_data"]
        assert stamp["item_map_sha256"] == item_map_digest(trained.data.item_ids)
        assert stamp["num_items"] == 20 and stamp["dataset"] == "serve"
        assert stamp["cache_key"] == Path(trained.metrics["data"]["data_dir"]).name


def test_serving_refuses_a_checkpoint_of_another_dataset_with_the_same_item_count(trained, tmp_path) -> None:
    run_dir = copy_run(trained, tmp_path)
    other = [f"other-{i:02d}" for i in range(20)]
    pd.DataFrame({"index": range(1, 21), "raw_id": other}).to_csv(run_dir / "item_map.csv", index=False)
    popularity = pd.read_csv(run_dir / "item_popularity.csv")
    popularity.assign(raw_id=other).to_csv(run_dir / "item_popularity.csv", index=False)
    with pytest.raises(DataError) as info:
        Recommender.load(run_dir, device="cpu")
    message = one_line(info.value)
    assert "another dataset" in message and "item_map.csv" in message


def test_resuming_from_a_checkpoint_of_another_dataset_is_refused(trained, tmp_path) -> None:
    # TinySource has 20 items too, under other raw ids: the weights fit, the items do not
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *NET, f"ckpt_path={best_of(trained.run_dir)}")
    with pytest.raises(Exception) as info:
        run(cfg, output_dir=tmp_path / "run")
    message = one_line(info.value)
    assert "another dataset" in message and "ckpt_path=" in message
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))


# -- 7. one clear line for every bad input ----------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.lr=-1", "optim.lr=-1; expected a positive number"),
        ("optim.lr=abc", "optim.lr='abc'; expected a positive number"),
        ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1; expected a non-negative number"),
        ("dataset.user_core=abc", "dataset.user_core='abc'; expected a non-negative integer"),
        ("dataset.item_core=-2", "dataset.item_core=-2; expected a non-negative integer"),
        ("model.net.hidden=0", "model.net.hidden=0; expected a positive integer"),
        ("model.net.dropout=2", "model.net.dropout=2; expected a probability in [0, 1)"),
        ("model.net.field.width=abc", "model.net.field.width='abc'; expected a positive integer"),
        ("seed=abc", "seed='abc'; expected an integer"),
    ],
    ids=lambda value: str(value).split("=")[0] if "=" in str(value) else None,
)
def test_bad_values_fail_before_any_work(tmp_path: Path, override: str, expected: str) -> None:
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *NET, override)
    with pytest.raises(ConfigError) as info:
        run(cfg, output_dir=tmp_path / "run")
    assert expected in one_line(info.value)
    assert not (tmp_path / "data").exists(), "no data may be read or cached"


def test_resuming_from_a_truncated_checkpoint_is_one_line(trained, tmp_path: Path) -> None:
    data = best_of(trained.run_dir).read_bytes()
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *NET, f"ckpt_path={truncated}")
    with pytest.raises(Exception) as info:
        run(cfg, output_dir=tmp_path / "run")
    assert f"ckpt_path={truncated}: not a loadable checkpoint" in one_line(info.value)
    assert truncated.read_bytes() == data[: len(data) // 2]


@pytest.mark.parametrize("value", ["99999999999999999999", 99999999999999999999, "1e19", 2**63, -1, "-5"])
def test_serving_times_outside_int64_seconds_or_negative_are_one_line(value) -> None:
    with pytest.raises(DataError, match=r"at=.*expected a non-negative integer number of unix seconds below 2\^63"):
        to_seconds(value, "at")


def test_a_serving_time_just_inside_the_range_is_accepted() -> None:
    assert to_seconds(2**63 - 1, "at") == 2**63 - 1 and to_seconds("0", "at") == 0


# -- 8. messages that name the real problem ---------------------------------------------------------


@pytest.mark.parametrize("value", ["10000000000000000000", "99999999999999999999", "1e19", "9223372036854775808"])
def test_a_timestamp_beyond_int64_names_its_line_and_the_files_value(value: str) -> None:
    stamps = pd.Series(["100", "200", value, "300"])
    with pytest.raises(DataError, match=rf"f\.csv: line 4: field 'ts' = '{value}'; expected a non-negative integer"):
        to_unix_seconds(stamps, "s", "f.csv", "ts", first_line=2)


def test_the_largest_int64_timestamp_is_still_read_exactly() -> None:
    assert to_unix_seconds(pd.Series(["9223372036854775807"]), "s", "f", "ts", 2).tolist() == [2**63 - 1]


def test_a_missing_file_without_a_suffix_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"interactions: file not found"):
        InteractionsFileSource(tmp_path / "interactions")


def test_a_zip_with_a_symlink_member_is_refused_as_such(tmp_path: Path) -> None:
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        link = zipfile.ZipInfo("ml-1m")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        link.create_system = 3
        zf.writestr(link, "/etc")
        zf.writestr("ml-1m/ratings.dat", "1::1::5::1\n")
    with pytest.raises(DataError, match=r"member 'ml-1m' is a symbolic link") as info:
        ensure_extracted(tmp_path / "ml-1m" / "ratings.dat", archive, url=None, checksum=None)
    assert "truncated" not in one_line(info.value)
    assert visible(tmp_path) == ["ml-1m.zip"]


# -- 9. plausibility ------------------------------------------------------------------------------


def test_millisecond_timestamps_read_as_seconds_warn_with_the_likely_unit(tmp_path: Path, caplog) -> None:
    path = tmp_path / "clicks.csv"
    pd.DataFrame(
        {"user_id": ["a", "a"], "item_id": ["x", "y"], "timestamp": [1_500_000_000_000, 1_500_000_100_000]}
    ).to_csv(path, index=False)
    with caplog.at_level(logging.WARNING):
        InteractionsFileSource(path).read()
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "clicks.csv" in warning and "year ~49,503" in warning and "milliseconds" in warning
    assert "timestamp_unit=ms" in warning


def test_plausible_seconds_do_not_warn(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        validate_interactions(pd.DataFrame({"user": ["a"], "item": ["x"], "timestamp": [1_700_000_000]}), "src")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_recommend_refuses_a_non_boolean_exclude_seen(tmp_path: Path) -> None:
    from deepm3.recommend import run as recommend

    (tmp_path / "h.csv").write_text("user,item,timestamp\nu1,sku-003,100\n")
    with pytest.raises(ConfigError, match=r"exclude_seen='maybe'; expected true or false") as info:
        recommend(
            recommend_config(
                f"run={tmp_path}", f"input={tmp_path / 'h.csv'}", f"output={tmp_path / 'o.csv'}", "exclude_seen=maybe"
            )
        )
    one_line(info.value)
    assert not (tmp_path / "o.csv").exists()
