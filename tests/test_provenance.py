"""The code version a run records: a commit, and whether code (not study tables) was modified; a
study trains from modified code only when told to (``allow_dirty=true``), and its runs say so."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepm3 import provenance
from deepm3.errors import ConfigError
from deepm3.provenance import array_fingerprint, git_commit, require_clean_tree, run_provenance


def _repo(tmp_path: Path) -> Path:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "src").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "table.md").write_text("| a |\n")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    return tmp_path


def test_a_clean_checkout_is_not_dirty(tmp_path: Path) -> None:
    commit, dirty = git_commit(_repo(tmp_path))
    assert len(commit) == 40 and dirty is False


def test_rewritten_study_tables_do_not_make_the_code_dirty(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "results" / "table.md").write_text("| b |\n")
    assert git_commit(repo / "src")[1] is False


def test_a_modified_source_file_makes_the_code_dirty(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "src" / "code.py").write_text("x = 2\n")
    assert git_commit(repo / "src")[1] is True


def test_outside_git_the_version_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == ("unknown", None)


def test_the_data_fingerprint_changes_with_any_value_and_only_then() -> None:
    a = np.arange(10, dtype=np.int64)
    assert array_fingerprint(a) == array_fingerprint(a.copy())
    b = a.copy()
    b[3] = 99
    assert array_fingerprint(a) != array_fingerprint(b)


# -- a study refuses to train from a dirty tree unless told to ------------------------------------


def test_a_study_refuses_to_train_from_a_dirty_tree(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "src" / "code.py").write_text("x = 2\n")
    with pytest.raises(
        ConfigError, match=r"^phase2 train: 3 runs would train from uncommitted code .*allow_dirty=true"
    ):
        require_clean_tree(False, 3, "train", cwd=repo / "src")


def test_allow_dirty_lets_it_train_and_each_run_records_it(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "src" / "code.py").write_text("x = 2\n")
    require_clean_tree(True, 3, "train", cwd=repo / "src")
    assert run_provenance("cpu", "f")["allow_dirty"] is True
    require_clean_tree(False, 0, "train", cwd=repo / "src")  # the next study says otherwise
    assert run_provenance("cpu", "f")["allow_dirty"] is False


def test_a_dirty_tree_with_nothing_to_train_passes(tmp_path: Path) -> None:
    """Rebuilding tables (or resuming a complete study) trains nothing, so no code is at stake."""
    repo = _repo(tmp_path)
    (repo / "src" / "code.py").write_text("x = 2\n")
    require_clean_tree(False, 0, "train", cwd=repo / "src")


def test_a_clean_tree_trains_without_the_flag(tmp_path: Path) -> None:
    require_clean_tree(False, 3, "train", cwd=_repo(tmp_path) / "src")


def test_the_suite_checks_the_tree_before_its_first_training(tmp_path: Path, monkeypatch) -> None:
    from deepm3.phase2.pipeline import run_phase2
    from tests.helpers.tiny_study import phase2_config

    monkeypatch.setattr(provenance, "git_commit", lambda cwd=None: ("0123456789abcdef", True))
    cfg = phase2_config(tmp_path / "results", tmp_path / "data", "studies=[train]", models={"pop": ["model=pop"]})
    cfg.allow_dirty = False
    with pytest.raises(ConfigError, match="phase2 train: 2 runs would train from uncommitted code"):
        run_phase2(cfg)
    assert not any((tmp_path / "results" / "tiny" / "runs").glob("*/metrics.json"))
