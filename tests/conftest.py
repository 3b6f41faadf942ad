"""Shared fixtures: every test writes to tmp folders and runs on a single CPU thread."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep caches and outputs out of the user's home and the source tree."""
    monkeypatch.setenv("DEEPM3_DATA_DIR", str(tmp_path_factory.getbasetemp() / "data"))
    monkeypatch.setenv("DEEPM3_OUTPUT_DIR", str(tmp_path_factory.getbasetemp() / "outputs"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    try:
        yield set_mask
    finally:
        os.umask(old)
