"""Checkpoints (deepm3.checkpoint): what a checkpoint may hold, and what loading one refuses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deepm3.models.module import RecModule


def test_checkpoints_holding_arbitrary_objects_are_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": Payload()}}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch.load(path, weights_only=True)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        RecModule.load_from_checkpoint(path, weights_only=True)
