"""Atomic file writes (deepm3.io): an interrupted write leaves the previous file or none, never a half one."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from deepm3.io import write_atomic, write_json


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
