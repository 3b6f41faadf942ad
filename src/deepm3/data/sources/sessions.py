"""Session datasets split by time in their files: a training file and a test file of later sessions.

The layout of the session-based recommendation benchmarks (GRU4Rec's YOOCHOOSE preparation and
the frameworks that followed it): tab-separated, header ``SessionId ItemId Time``, time in unix
seconds with a fractional part. A session is a sequence (there are no user ids); the test file's
events are marked ``test`` so that ``dataset.split=given`` makes each of their clicks after a
session's first a target (docs/protocol.md, "Split by time").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource
from deepm3.data.sources.fields import check_filled, floor_seconds
from deepm3.errors import DataError

DEFAULT_COLUMNS = {"session": "SessionId", "item": "ItemId", "time": "Time"}


class SessionFilesSource(InteractionSource):
    """``folder/train`` and ``folder/test``; a session id found in both files is an error (it would
    join a training session to a test one)."""

    def __init__(
        self,
        folder: str | Path,
        train: str = "train.tsv",
        test: str = "test.tsv",
        sep: str = "\t",
        columns: dict[str, str] | None = None,
        name: str = "sessions",
    ) -> None:
        if folder in (None, ""):
            raise DataError("dataset.source.folder is not set; expected the folder holding the session files")
        self.folder = Path(folder).expanduser()
        self.train, self.test = train, test
        self.sep = sep
        self.columns = {**DEFAULT_COLUMNS, **(columns or {})}
        self.name = name

    def files(self) -> list[Path]:
        paths = [self.folder / self.train, self.folder / self.test]
        for path in paths:
            if not path.is_file():
                raise DataError(
                    f"{path}: file not found; expected the session files {self.train} and {self.test} in {self.folder}"
                )
        return paths

    def read(self) -> pd.DataFrame:
        train, test = (self._read(path) for path in self.files())
        shared = np.intersect1d(train["user"].unique(), test["user"].unique())
        if len(shared):
            raise DataError(
                f"{self.folder}: session {shared[0]!r} is in both {self.train} and {self.test};"
                " expected the test file to hold only sessions of its own"
            )
        table = pd.concat([train.assign(test=False), test.assign(test=True)], ignore_index=True)
        return validate_interactions(table, str(self.folder))

    def _read(self, path: Path) -> pd.DataFrame:
        wanted = list(self.columns.values())
        try:
            raw = pd.read_csv(path, sep=self.sep, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
            message = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise DataError(f"{path}: {message}; expected a header line {wanted} separated by {self.sep!r}") from None
        missing = [c for c in wanted if c not in raw.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; expected {wanted}, got {list(raw.columns)}")
        check_filled(raw, wanted, str(path), 2)
        return pd.DataFrame(
            {
                "user": raw[self.columns["session"]].to_numpy(),
                "item": raw[self.columns["item"]].to_numpy(),
                "timestamp": floor_seconds(raw[self.columns["time"]], str(path), self.columns["time"], first_line=2),
            }
        )

    def params(self) -> dict[str, Any]:
        return {"train": self.train, "test": self.test, "sep": self.sep, "columns": self.columns}
