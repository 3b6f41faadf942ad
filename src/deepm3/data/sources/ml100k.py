"""MovieLens-100k, the embedded default: GroupLens ``u.data``, or the copy inside recbole 1.2.1.

Resolution order: a ``u.data`` already in ``raw_dir`` (put there by hand or downloaded
earlier), then the atomic file shipped in the ``recbole==1.2.1`` wheel (found without
importing recbole, checksum verified), then a download of ``ml-100k.zip`` when ``download``
is on. Both files hold the same 100,000 rows in the same order.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pandas as pd

from deepm3.data.download import ensure_file, safe_extract_zip, verify_checksum
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource
from deepm3.data.sources.readers import read_delimited
from deepm3.errors import DataError

URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ZIP_CHECKSUM = "md5:0e33842e24a9c977be4e0107933c0723"
RECBOLE_FILE = "dataset_example/ml-100k/ml-100k.inter"
RECBOLE_SHA256 = "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"
COLUMNS = ["user", "item", "rating", "timestamp"]


def recbole_copy() -> Path | None:
    """Path of ``ml-100k.inter`` inside an installed recbole, or None. Does not import recbole."""
    try:
        spec = importlib.util.find_spec("recbole")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / RECBOLE_FILE
        if candidate.is_file():
            return candidate
    return None


class ML100kSource(InteractionSource):
    """MovieLens-100k ratings as implicit interactions."""

    name = "ml100k"

    def __init__(self, raw_dir: str | Path, download: bool = True, use_recbole: bool = True) -> None:
        self.raw_dir = Path(raw_dir).expanduser()
        self.download = download
        self.use_recbole = use_recbole
        self._resolved: Path | None = None

    def files(self) -> list[Path]:
        if self._resolved is None:
            self._resolved = self._resolve()
        return [self._resolved]

    def _resolve(self) -> Path:
        u_data = self.raw_dir / "ml-100k" / "u.data"
        if u_data.is_file():
            return u_data
        if self.use_recbole and (copy := recbole_copy()) is not None:
            verify_checksum(copy, RECBOLE_SHA256)
            return copy
        if not self.download:
            raise DataError(self._missing_message())
        try:
            archive = ensure_file(self.raw_dir / "ml-100k.zip", URL, ZIP_CHECKSUM)
        except DataError as exc:
            raise DataError(f"{exc}; or {self._missing_message()}") from None
        safe_extract_zip(archive, self.raw_dir)
        if not u_data.is_file():
            raise DataError(f"{archive}: archive has no ml-100k/u.data; delete it and download again")
        return u_data

    def _missing_message(self) -> str:
        return (
            "MovieLens-100k not found: run `pip install --no-deps recbole==1.2.1` (it ships the"
            f" data), or put GroupLens 'u.data' at {self.raw_dir / 'ml-100k' / 'u.data'}"
        )

    def read(self) -> pd.DataFrame:
        path = self.files()[0]
        has_header = path.suffix == ".inter"
        table = read_delimited(path, sep="\t", names=COLUMNS, skip_header=has_header, numeric=["timestamp", "rating"])
        return validate_interactions(table, str(path))

    def params(self) -> dict[str, Any]:
        return {}
