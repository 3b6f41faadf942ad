"""Rules every source file of the package keeps, read from the code: nothing evaluates or unpickles data."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src" / "deepm3"


def test_no_source_file_evaluates_or_unpickles_data() -> None:
    pattern = re.compile(r"(?<![\w.])(eval|exec)\(|pickle\.loads?\(|allow_pickle=True|weights_only=False")
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
