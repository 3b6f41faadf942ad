"""The main table's slices: novel / repeat targets, and the per-sequence view of a split by time."""

from __future__ import annotations

import pandas as pd
import pytest

from deepm3.phase2.main_table import write_slices


def run(seed: int, ndcg: float, repeat_ndcg: float | None = None, per_sequence: float | None = None) -> dict:
    test = {"ndcg@10": ndcg}
    if repeat_ndcg is not None:
        test.update({"repeat_share": 0.5, "repeat/ndcg@10": repeat_ndcg, "novel/ndcg@10": 2 * ndcg - repeat_ndcg})
    out = {"model": "m", "seed": seed, "num_params": 10, "train_seconds": 1.0, "test": test}
    if per_sequence is not None:
        out["test_per_sequence"] = {"ndcg@10": per_sequence}
    return out


def test_repeat_and_novel_slices_average_over_seeds(tmp_path):
    written = write_slices([run(0, 0.2, 0.3), run(1, 0.4, 0.5)], tmp_path, "", "")
    assert {p.name for p in written} >= {"main_table_repeat.csv", "main_table_novel.csv"}
    repeat = pd.read_csv(tmp_path / "main_table_repeat.csv")
    assert repeat.loc[0, "ndcg@10"] == pytest.approx(0.4)
    assert pd.read_csv(tmp_path / "main_table_novel.csv").loc[0, "ndcg@10"] == pytest.approx(0.2)
    assert "50.0% of targets repeat" in (tmp_path / "main_table_repeat.md").read_text()


def test_the_per_sequence_view_reads_each_runs_per_sequence_metrics(tmp_path):
    write_slices([run(0, 0.2, per_sequence=0.1), run(1, 0.4, per_sequence=0.3)], tmp_path, "_last", "")
    assert pd.read_csv(tmp_path / "main_table_per_sequence_last.csv").loc[0, "ndcg@10"] == pytest.approx(0.2)


def test_runs_without_repeats_or_a_time_split_write_no_slice(tmp_path):
    assert write_slices([run(0, 0.2), run(1, 0.4)], tmp_path, "", "") == []


def test_the_report_lists_each_main_table_in_every_query_mode():
    from deepm3.phase2.report import SECTIONS

    names = [name for name, _ in SECTIONS]
    for stem in ("main_table", "main_table_repeat", "main_table_per_sequence"):
        assert {stem, f"{stem}_target", f"{stem}_last"} <= set(names)
