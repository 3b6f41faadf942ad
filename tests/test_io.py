"""Atomic file writes (deepm3.io): an interrupted write leaves the previous file or none, never a half one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepm3.io import write_atomic


def test_an_interrupted_write_leaves_neither_the_file_nor_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"

    def crash(tmp: Path) -> None:
        tmp.write_text('{"half": ')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(target, crash)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_keeps_the_previous_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text('{"complete": true}')
    with pytest.raises(RuntimeError):
        write_atomic(target, lambda tmp: (tmp.write_text("{"), (_ for _ in ()).throw(RuntimeError())))
    assert json.loads(target.read_text()) == {"complete": True}
