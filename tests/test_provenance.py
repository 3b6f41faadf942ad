"""The code version a run records: a commit, and whether code (not study tables) was modified."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from deepm3.provenance import array_fingerprint, git_commit


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
