"""MovieLens-1M: GroupLens ``ml-1m.zip`` -> ``ml-1m/ratings.dat`` (``UserID::MovieID::Rating::Timestamp``).

1,000,209 ratings by 6,040 users, timestamps in seconds, about half of them tied within a
user (docs/protocol.md, "Data and split": they keep their file order). The archive is downloaded once, md5-verified
(GroupLens publishes the sum) and extracted without letting any member escape ``raw_dir``.
The ``.dat`` files are latin-1 (``movies.dat`` has accented titles), so they are decoded as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from deepm3.data.download import ensure_extracted
from deepm3.data.schema import validate_interactions
from deepm3.data.sources.base import InteractionSource
from deepm3.data.sources.fields import to_unix_seconds
from deepm3.data.sources.readers import read_delimited

URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
ZIP_CHECKSUM = "md5:c4d9eecfca2ab87c1945afe126590906"
COLUMNS = ["user", "item", "rating", "timestamp"]
ENCODING = "latin-1"


class ML1MSource(InteractionSource):
    """MovieLens-1M ratings as implicit interactions.

    ``url``/``checksum`` default to the GroupLens archive; a mirror (or a test server) can
    stand in. A ``ratings.dat`` already at ``raw_dir/ml-1m/`` is used without any download.
    """

    name = "ml1m"

    def __init__(
        self, raw_dir: str | Path, download: bool = True, url: str = URL, checksum: str | None = ZIP_CHECKSUM
    ) -> None:
        self.raw_dir = Path(raw_dir).expanduser()
        self.download = download
        self.url = url
        self.checksum = checksum

    def files(self) -> list[Path]:
        ratings = ensure_extracted(
            self.raw_dir / "ml-1m" / "ratings.dat",
            self.raw_dir / "ml-1m.zip",
            self.url,
            self.checksum,
            download=self.download,
        )
        return [ratings]

    def read(self) -> pd.DataFrame:
        path = self.files()[0]
        table = read_delimited(path, sep="::", names=COLUMNS, numeric=["rating"], encoding=ENCODING)
        table["timestamp"] = to_unix_seconds(table["timestamp"], "s", str(path), "timestamp", first_line=1)
        return validate_interactions(table, str(path))

    def params(self) -> dict[str, Any]:
        return {}
