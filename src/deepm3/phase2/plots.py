"""Matplotlib on the Agg backend (no display needed), saved atomically as PNG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  -- the backend must be chosen first
from matplotlib.figure import Figure  # noqa: E402

from deepm3.io import write_atomic  # noqa: E402


def save_png(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return path


def figure(columns: int = 1, width: float = 5.0, height: float = 3.6) -> tuple[Figure, list]:
    fig, axes = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return fig, list(axes[0])
