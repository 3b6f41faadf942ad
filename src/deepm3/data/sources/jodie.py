"""Temporal interaction networks of the JODIE work (Kumar et al., KDD 2019): Wikipedia edits, Reddit posts.

One CSV per network, one interaction per line, sorted by time in seconds since the first one.
Two layouts are read:

- JODIE's own file (``http://snap.stanford.edu/jodie/<name>.csv``): header
  ``user_id,item_id,timestamp,state_label,comma_separated_list_of_features`` and, on each line,
  the four fields followed by every feature (172 for Wikipedia), more fields than the header names;
- the layout of the temporal-graph benchmarks' copies: header ``u,i,ts,label`` (an unnamed
  index column first is allowed), the features dropped.

Only user, item and time are read; ``state_label`` (the user was banned after this edit) is not
a recommendation target. SNAP publishes no checksum for these files, so a download is checked
by its layout and row count instead (``expected_rows`` in the dataset config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from deepm3.data.download import ensure_file
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource
from deepm3.data.sources.fields import check_filled, floor_seconds
from deepm3.errors import DataError

JODIE_HEADER = ("user_id", "item_id", "timestamp")
BENCHMARK_HEADER = ("u", "i", "ts")
URL = "http://snap.stanford.edu/jodie/{name}.csv"


class JodieSource(InteractionSource):
    """A JODIE network: ``path`` (a local copy) or, without one, the public file fetched into ``raw_dir``."""

    def __init__(
        self,
        name: str = "wikipedia",
        path: str | Path | None = None,
        raw_dir: str | Path = "~/.cache/deepm3/raw/jodie",
        download: bool = True,
        url: str | None = None,
        checksum: str | None = None,
        expected_rows: int | None = None,
    ) -> None:
        self.name = name
        self.path = Path(path).expanduser() if path not in (None, "") else None
        self.raw_dir = Path(raw_dir).expanduser()
        self.download = download
        self.url = url or URL.format(name=name)
        self.checksum = checksum
        self.expected_rows = expected_rows

    def files(self) -> list[Path]:
        if self.path is not None:
            if not self.path.is_file():
                raise DataError(f"{self.path}: file not found; expected the {self.name} interactions CSV")
            return [self.path]
        dest = self.raw_dir / f"{self.name}.csv"
        return [ensure_file(dest, self.url if self.download else None, self.checksum)]

    def read(self) -> pd.DataFrame:
        path = self.files()[0]
        try:
            header = [c.strip() for c in path.open(encoding="utf-8").readline().rstrip("\n").split(",")]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: unreadable ({exc}); expected a UTF-8 CSV file") from None
        names = [c for c in header if c]  # an unnamed index column first ("", u, i, ts, ...) is skipped
        if tuple(names[:3]) == JODIE_HEADER:
            columns = [0, 1, 2]
        elif tuple(names[:3]) == BENCHMARK_HEADER:
            first = header.index("u")
            columns = [first, first + 1, first + 2]
        else:
            raise DataError(
                f"{path}: line 1: header {header[:4]}; expected JODIE's 'user_id,item_id,timestamp,...' or 'u,i,ts,...'"
            )
        try:
            raw = pd.read_csv(path, header=None, skiprows=1, usecols=columns, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, ValueError) as exc:
            message = str(exc).strip().splitlines()[-1]
            raise DataError(f"{path}: {message}; expected comma-separated user, item and time fields") from None
        raw.columns = ["user", "item", "timestamp"]
        if self.expected_rows is not None and len(raw) != self.expected_rows:
            raise DataError(f"{path}: {len(raw):,} interactions; expected {self.expected_rows:,} (a partial download?)")
        check_filled(raw, ["user", "item", "timestamp"], str(path), 2)
        raw["timestamp"] = floor_seconds(raw["timestamp"], str(path), "timestamp", first_line=2)
        return validate_interactions(raw, str(path))

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "expected_rows": self.expected_rows}
