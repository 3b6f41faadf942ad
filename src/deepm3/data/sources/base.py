"""What every raw data source provides to the preprocessing pipeline."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import pandas as pd


class InteractionSource(ABC):
    """A dataset's raw form.

    ``files()`` makes the raw files available (locating or downloading them) and raises a
    one-line :class:`~deepm3.errors.DataError` saying what to do when it cannot;
    ``read()`` returns the validated interactions table (see ``deepm3.data.schema``).
    ``identity()`` lists everything that determines the table, so the processed-data cache
    is rebuilt when any of it changes.
    """

    name: str = "source"

    @abstractmethod
    def files(self) -> list[Path]:
        """Raw files this source reads, present on disk after the call."""

    @abstractmethod
    def read(self) -> pd.DataFrame:
        """Interactions table with ``user``, ``item``, ``timestamp`` (int64 s), optional ``rating``."""

    def identity(self) -> dict[str, Any]:
        """Parameters and file fingerprints that determine ``read()``'s output."""
        return {
            "source": type(self).__name__,
            "params": self.params(),
            "files": [file_fingerprint(p) for p in self.files()],
        }

    def params(self) -> dict[str, Any]:
        """Reading options that change the table (override when a source has any)."""
        return {}


def file_fingerprint(path: Path) -> dict[str, Any]:
    """Cheap identity of a file: name, size and modification time."""
    stat = Path(path).stat()
    return {"name": Path(path).name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
