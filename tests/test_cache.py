"""Processed data is cached on disk and rebuilt exactly when its inputs change."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepm3.data.cache import load_or_build
from deepm3.data.preprocess import PreprocessConfig
from deepm3.data.processed import ProcessedData
from tests.helpers.spine_fixtures import CsvSource, TinySource

CONFIG = PreprocessConfig(user_core=0, item_core=0)
ROWS = [
    ("u1", "a", 1),
    ("u1", "b", 2),
    ("u1", "c", 3),
    ("u1", "e", 4),
    ("u2", "a", 4),
    ("u2", "c", 5),
    ("u2", "d", 6),
    ("u2", "e", 7),
]


@pytest.fixture
def raw_csv(tmp_path):
    path = tmp_path / "raw" / "interactions.csv"
    path.parent.mkdir()
    pd.DataFrame(ROWS, columns=["user", "item", "timestamp"]).to_csv(path, index=False)
    return path


def test_second_load_comes_from_the_cache(raw_csv, tmp_path):
    first, folder = load_or_build(CsvSource(raw_csv), CONFIG, tmp_path / "cache")
    source = CsvSource(raw_csv)
    second, same_folder = load_or_build(source, CONFIG, tmp_path / "cache")
    assert source.reads == 0
    assert same_folder == folder
    assert ProcessedData.is_complete(folder)
    np.testing.assert_array_equal(second.items, first.items)
    assert second.item_ids.tolist() == first.item_ids.tolist()


def test_changed_preprocessing_config_builds_a_new_cache(raw_csv, tmp_path):
    _, folder = load_or_build(CsvSource(raw_csv), CONFIG, tmp_path / "cache")
    source = CsvSource(raw_csv)
    data, other = load_or_build(source, PreprocessConfig(user_core=0, item_core=2), tmp_path / "cache")
    assert source.reads == 1
    assert other != folder
    assert sorted(data.item_ids.tolist()) == ["a", "c", "e"]  # b and d occur once


def test_changed_raw_file_size_triggers_a_rebuild(raw_csv, tmp_path):
    load_or_build(CsvSource(raw_csv), CONFIG, tmp_path / "cache")
    stat = raw_csv.stat()
    with open(raw_csv, "a") as handle:
        handle.write("u3,a,7\nu3,b,8\nu3,e,9\n")
    os.utime(raw_csv, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the size differs
    source = CsvSource(raw_csv)
    data, _ = load_or_build(source, CONFIG, tmp_path / "cache")
    assert source.reads == 1
    assert "u3" in data.user_ids.tolist()


def test_changed_raw_file_mtime_triggers_a_rebuild(raw_csv, tmp_path):
    load_or_build(CsvSource(raw_csv), CONFIG, tmp_path / "cache")
    stat = raw_csv.stat()
    os.utime(raw_csv, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    source = CsvSource(raw_csv)
    load_or_build(source, CONFIG, tmp_path / "cache")
    assert source.reads == 1


@pytest.mark.parametrize("missing", ["stats.json", "sequences.npz", "item_map.csv", "user_map.csv"])
def test_an_incomplete_cache_folder_is_rebuilt_not_trusted(raw_csv, tmp_path, missing):
    _, folder = load_or_build(CsvSource(raw_csv), CONFIG, tmp_path / "cache")
    (folder / missing).unlink()
    source = CsvSource(raw_csv)
    data, rebuilt = load_or_build(source, CONFIG, tmp_path / "cache")
    assert source.reads == 1
    assert rebuilt == folder
    assert ProcessedData.is_complete(folder)
    assert data.stats["interactions"] == len(ROWS)


def test_concurrent_builds_of_one_cache_end_with_one_valid_folder(tmp_path: Path) -> None:
    source = TinySource(tmp_path / "raw")
    source.files()
    results, errors = [], []

    def build() -> None:
        try:
            results.append(load_or_build(source, PreprocessConfig(), tmp_path / "cache"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    folders = {folder for _, folder in results}
    assert len(folders) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [next(iter(folders)).name]
    for data, _ in results:
        np.testing.assert_array_equal(data.items, results[0][0].items)


def test_the_processed_data_cache_is_readable_by_others_under_umask_022(tmp_path: Path, umask) -> None:
    source = TinySource(tmp_path / "raw")
    _, folder = load_or_build(source, PreprocessConfig(), tmp_path / "cache")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o644}
