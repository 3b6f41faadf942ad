"""The run folder contract (deepm3.run_dir): what training writes is what every reader finds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from deepm3 import run_dir as rd
from deepm3.errors import DataError
from tests.helpers.config import compose


def test_metrics_mark_a_run_complete_and_round_trip(tmp_path: Path) -> None:
    assert not rd.is_complete(tmp_path) and rd.try_read_metrics(tmp_path) is None
    rd.write_metrics(tmp_path, {"model": "gru4rec", "test": {"ndcg@10": 0.25}, "best_checkpoint": "/x/best.ckpt"})
    assert rd.is_complete(tmp_path)
    assert rd.read_metrics(tmp_path)["test"] == {"ndcg@10": 0.25}
    (tmp_path / rd.METRICS_FILE).write_text("{not json")
    assert rd.try_read_metrics(tmp_path) is None  # scans skip it instead of stopping


def test_error_record_is_one_line_and_cleared(tmp_path: Path) -> None:
    assert rd.read_error(tmp_path) is None and not rd.has_error(tmp_path)
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        rd.write_error(tmp_path, ["seed=1"], exc)
    assert rd.has_error(tmp_path) and rd.read_error(tmp_path) == "ValueError: bad value"
    rd.clear_error(tmp_path)
    assert not rd.has_error(tmp_path)


def test_user_rows_keep_user_ids_as_text(tmp_path: Path) -> None:
    rd.write_user_rows(tmp_path, pd.DataFrame({"user": ["007", "NA"], "rank": [1, 2]}))
    rows = rd.read_user_rows(tmp_path)
    assert rows["user"].tolist() == ["007", "NA"] and rows["rank"].tolist() == [1, 2]


def test_item_map_and_popularity_round_trip(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    pd.DataFrame({"index": [1, 2, 3], "raw_id": ["a", "007", "c"]}).to_csv(data_dir / rd.ITEM_MAP_FILE, index=False)
    run = tmp_path / "run"
    rd.write_item_map(run, data_dir)
    items = rd.read_item_map(run)
    assert items.tolist() == ["a", "007", "c"]
    rd.write_popularity(run, items, np.array([0, 5, 1, 3]))
    assert rd.read_popularity(run, items).tolist() == [0, 5, 1, 3]
    with pytest.raises(DataError, match="same order"):
        rd.read_popularity(run, items[::-1].copy())


def test_checkpoints_are_found_by_name_then_best_then_last(tmp_path: Path) -> None:
    folder = rd.checkpoint_dir(tmp_path)
    with pytest.raises(DataError, match="no checkpoint"):
        rd.best_checkpoint(tmp_path)
    folder.mkdir()
    rd.last_checkpoint(tmp_path).write_bytes(b"")
    assert rd.best_checkpoint(tmp_path) == folder / "last.ckpt"
    (folder / "best-epoch001.ckpt").write_bytes(b"")
    (folder / "best-epoch002.ckpt").write_bytes(b"")
    assert rd.best_checkpoint(tmp_path) == folder / "best-epoch002.ckpt"
    rd.write_metrics(tmp_path, {"best_checkpoint": "/moved/elsewhere/checkpoints/best-epoch001.ckpt"})
    assert rd.best_checkpoint(tmp_path) == folder / "best-epoch001.ckpt"  # by name: the run dir moved
    assert rd.locate_run(tmp_path) == (tmp_path, folder / "best-epoch001.ckpt")
    assert rd.locate_run(folder / "last.ckpt") == (tmp_path, folder / "last.ckpt")
    with pytest.raises(DataError, match="expected a run dir or a .ckpt"):
        rd.locate_run(rd.write_metrics(tmp_path, {}))


def test_config_round_trip_and_window_length(tmp_path: Path) -> None:
    rd.save_config(tmp_path, OmegaConf.create({"dataset": {"max_len": 7}, "hydra": {"run": {}}}))
    config = rd.read_config(tmp_path)
    assert "hydra" not in config and rd.config_max_len(config, tmp_path) == 7
    with pytest.raises(DataError, match="dataset.max_len"):
        rd.config_max_len(OmegaConf.create({"dataset": {"max_len": 0}}), tmp_path)
    with pytest.raises(DataError, match="no .hydra/config.yaml"):
        rd.read_config(tmp_path / "elsewhere")


def test_the_checkpoint_callback_writes_where_readers_look() -> None:
    dirpath = compose("train", ["paths.output_dir=/runs/x"]).callbacks.model_checkpoint.dirpath
    assert Path(dirpath) == rd.checkpoint_dir(Path("/runs/x"))


def test_the_plan_does_not_import_the_training_entry_point() -> None:
    code = "import sys, deepm3.phase2.plan; sys.exit('deepm3.train' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- paths in metrics.json are relative to the study folder, and both forms read back ---------------


def study_run(tmp_path: Path, name: str = "sasrec-seed0") -> Path:
    run = tmp_path / "study" / "runs" / name
    run.mkdir(parents=True)
    return run


def test_metrics_name_the_tested_checkpoint_relative_to_the_study_folder(tmp_path: Path) -> None:
    run = study_run(tmp_path)
    rd.write_metrics(run, {"best_checkpoint": str(run / "checkpoints" / "best-epoch003.ckpt")})
    assert rd.read_metrics(run)["best_checkpoint"] == "runs/sasrec-seed0/checkpoints/best-epoch003.ckpt"


def test_a_copied_runs_source_is_named_relative_to_the_study_folder(tmp_path: Path) -> None:
    run = study_run(tmp_path)
    rd.write_metrics(run, {"reused_from": str(tmp_path / "study" / "runs" / "tune-sasrec-1-seed0")})
    assert rd.read_metrics(run)["reused_from"] == "runs/tune-sasrec-1-seed0"


def test_the_recorded_commands_output_folder_is_relative_to_the_study_folder(tmp_path: Path) -> None:
    run = study_run(tmp_path)
    command = f"python -m deepm3.train model=sasrec seed=0 paths.output_dir={run}"
    rd.write_metrics(run, {"provenance": {"command": command, "commit": "abc"}})
    recorded = rd.read_metrics(run)["provenance"]
    assert recorded == {
        "command": "python -m deepm3.train model=sasrec seed=0 paths.output_dir=runs/sasrec-seed0",
        "commit": "abc",
    }


def test_the_processed_data_folder_is_named_under_the_data_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DEEPM3_DATA_DIR", str(tmp_path / "cache"))
    run = study_run(tmp_path)
    rd.write_metrics(run, {"data": {"users": 3, "data_dir": str(tmp_path / "cache" / "processed" / "ml100k-abc")}})
    recorded = rd.read_metrics(run)["data"]
    assert recorded == {"users": 3, "data_dir": "<data_dir>/processed/ml100k-abc"}
    assert rd.resolve_data_dir(recorded["data_dir"]) == tmp_path / "cache" / "processed" / "ml100k-abc"


def test_a_path_outside_the_study_folder_is_kept_as_it_is(tmp_path: Path) -> None:
    run = study_run(tmp_path)
    rd.write_metrics(run, {"reused_checkpoint_from": "/elsewhere/run"})
    assert rd.read_metrics(run)["reused_checkpoint_from"] == "/elsewhere/run"


def test_a_run_outside_a_runs_folder_names_paths_relative_to_itself(tmp_path: Path) -> None:
    rd.write_metrics(tmp_path, {"best_checkpoint": str(tmp_path / "checkpoints" / "last.ckpt")})
    assert rd.read_metrics(tmp_path)["best_checkpoint"] == "checkpoints/last.ckpt"


def test_readers_accept_old_absolute_and_new_relative_paths(tmp_path: Path) -> None:
    run = study_run(tmp_path)
    assert rd.resolve_run_path("runs/tune-sasrec-1-seed0", run) == tmp_path / "study" / "runs" / "tune-sasrec-1-seed0"
    assert rd.resolve_run_path("/old/machine/results/x/runs/a", run) == Path("/old/machine/results/x/runs/a")
    assert rd.resolve_data_dir("/root/.cache/deepm3/processed/ml100k-abc") == Path(
        "/root/.cache/deepm3/processed/ml100k-abc"
    )


@pytest.mark.parametrize(
    "named", ["runs/sasrec-seed0/checkpoints/best.ckpt", "/old/machine/runs/x/checkpoints/best.ckpt"]
)
def test_the_tested_checkpoint_is_found_from_either_form(tmp_path: Path, named: str) -> None:
    run = study_run(tmp_path)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best.ckpt").write_bytes(b"x")
    assert rd.tested_checkpoint(run, {"best_checkpoint": named}) == run / "checkpoints" / "best.ckpt"
