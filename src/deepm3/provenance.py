"""What a number was computed with: code version, library versions, device, command, data.

Every run records this in its ``metrics.json`` (key ``provenance``), so a table can say
which code produced each of its rows and refuse to pass silently when they differ.

A study (``python -m deepm3.phase2``) refuses to train from a dirty tree -- tracked files that
differ from the commit, outside ``results/`` -- since no commit could then reproduce its runs;
``allow_dirty=true`` overrides that, and each run it trains records ``allow_dirty: true``.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from contextvars import ContextVar
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from deepm3.errors import ConfigError

PACKAGES = ("deepm3", "torch", "lightning", "torchdiffeq", "numpy", "hydra-core", "torchmetrics")


def git_commit(cwd: Path | None = None) -> tuple[str, bool | None]:
    """``(commit, dirty)`` of the checkout holding this code; ``("unknown", None)`` outside git.

    ``dirty`` counts tracked files outside ``results/`` only: untracked outputs and the study
    tables a run is writing do not make its code differ.
    """
    where = cwd or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    changed = [line[3:] for line in status.splitlines() if line.strip()]  # paths from the repository root
    return head, any(not path.strip('"').startswith("results/") for path in changed)


def code_version(cwd: Path | None = None) -> str:
    """The commit, with ``-dirty`` when tracked files differ from it (one string for tables)."""
    commit, dirty = git_commit(cwd)
    return f"{commit}-dirty" if dirty else commit


_ALLOW_DIRTY: ContextVar[bool] = ContextVar("allow_dirty", default=False)


def require_clean_tree(allow_dirty: bool, to_train: int, stage: str = "train", cwd: Path | None = None) -> None:
    """Refuse (one line) to train ``to_train`` runs of a study from a dirty tree unless ``allow_dirty``.

    Nothing to train, or code outside git, passes. The runs the stage then trains record
    ``allow_dirty`` in their provenance (:func:`run_provenance`), so a table can tell a run
    trained from uncommitted code on purpose."""
    _ALLOW_DIRTY.set(bool(allow_dirty))
    if to_train <= 0 or allow_dirty:
        return
    commit, dirty = git_commit(cwd)
    if dirty:
        raise ConfigError(
            f"phase2 {stage}: {to_train} runs would train from uncommitted code (tracked files differ from "
            f"{commit[:12]}; `git status`), so no commit could reproduce them; commit first, or pass "
            "allow_dirty=true (recorded in each run's provenance)"
        )


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_description(device: Any) -> str:
    """``cpu (<processor>)`` or the CUDA device's name."""
    text = str(device)
    if text.startswith("cuda"):
        import torch

        index = torch.device(text).index or 0
        return f"{text} ({torch.cuda.get_device_name(index)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def array_fingerprint(*arrays: np.ndarray) -> str:
    """Short sha256 of the arrays' dtypes, shapes and bytes: equal data, equal fingerprint."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def run_provenance(device: Any, data_fingerprint: str, argv: list[str] | None = None) -> dict[str, Any]:
    """The ``provenance`` block of a run's ``metrics.json``."""
    commit, dirty = git_commit()
    return {
        "commit": commit,
        "dirty": dirty,
        "code_version": code_version(),
        "versions": package_versions(),
        "python": platform.python_version(),
        "device": device_description(device),
        "command": " ".join(argv if argv is not None else sys.argv),
        "data_fingerprint": data_fingerprint,
        "allow_dirty": _ALLOW_DIRTY.get(),  # a study told to train from a dirty tree (plain runs: false)
    }
