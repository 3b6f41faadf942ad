"""``python -m deepm3.data.stats``: the dataset-table numbers, checked on data small enough to count by hand."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from deepm3.data.stats import dataset_stats, format_stats, run, within_user_gaps
from tests.helpers.config import CONF_DIR
from tests.helpers.spine_fixtures import processed

# user a: gaps 0, 10, 0, 30 (two ties); user b: gaps 20, 20 (no tie); user c: gap 100
DATA = processed(
    {
        "a": [(1, 0), (2, 0), (1, 10), (3, 10), (2, 40)],
        "b": [(1, 1000), (3, 1020), (2, 1040)],
        "c": [(3, 5000), (1, 5100)],
    }
)


def test_gaps_never_cross_from_one_user_to_the_next():
    assert within_user_gaps(DATA).tolist() == [0, 10, 0, 30, 20, 20, 100]


def test_counts_density_and_tied_share():
    stats = dataset_stats(DATA)
    assert (stats["users"], stats["items"], stats["interactions"]) == (3, 3, 10)
    assert stats["density"] == pytest.approx(10 / 9)
    assert stats["tied_share"] == pytest.approx(2 / 7)


def test_length_and_gap_quantiles():
    stats = dataset_stats(DATA)
    assert stats["sequence_length"]["min"] == 2 and stats["sequence_length"]["max"] == 5
    assert stats["sequence_length"]["median"] == 3 and stats["sequence_length"]["mean"] == pytest.approx(10 / 3)
    assert stats["gap_seconds"]["median"] == 20 and stats["gap_seconds"]["max"] == 100
    assert stats["gap_seconds"]["mean"] == pytest.approx(180 / 7)


def test_gap_cv_uses_training_gaps_of_users_where_it_is_defined():
    # training events exclude the last two (validation + test targets): user a keeps gaps 0, 10;
    # users b and c have fewer than two training gaps, so their CV is undefined
    stats = dataset_stats(DATA)
    assert stats["users_with_gap_cv"] == 1
    assert stats["gap_cv"]["median"] == pytest.approx(np.std([0, 10]) / np.mean([0, 10]))


def test_table_prints_every_figure():
    text = format_stats("tiny", dataset_stats(DATA))
    for label in (
        "users",
        "items",
        "interactions",
        "density",
        "tied timestamps",
        "28.6%",
        "sequence length",
        "gap (hours)",
        "per-user gap CV",
        "median",
        "p90",
    ):
        assert label in text


def test_run_builds_the_configured_dataset_and_writes_json(tmp_path, capsys):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(
            config_name="train",
            overrides=[
                "dataset=synthetic",
                "dataset.source.users=40",
                "dataset.source.items=30",
                "dataset.source.events_per_user=12",
                f"paths.output_root={tmp_path / 'out'}",
                f"paths.data_dir={tmp_path / 'data'}",
            ],
        )
    stats, path = run(cfg)
    assert path == tmp_path / "out" / "stats" / "synthetic.json"
    assert json.loads(path.read_text()) == json.loads(json.dumps(stats))
    assert stats["users"] == 40 and stats["interactions"] == 40 * 12
    assert "per-user gap CV" in capsys.readouterr().out


def stats_command(tmp_path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "deepm3.data.stats",
            *overrides,
            f"paths.output_root={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_command_line_reports_a_missing_file_in_one_line(tmp_path):
    missing = tmp_path / "nowhere.csv"
    result = stats_command(tmp_path, "dataset=interactions", f"dataset.source.path={missing}")
    assert result.returncode == 1
    assert f"error: {missing}: file not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "stats").exists()


def test_command_line_reports_a_bad_config_value_in_one_line(tmp_path):
    result = stats_command(tmp_path, "dataset=synthetic", "dataset.source.dim=5")
    assert result.returncode == 1
    assert "error: synthetic.dim=5; expected an even number" in result.stderr
    assert "Traceback" not in result.stderr
