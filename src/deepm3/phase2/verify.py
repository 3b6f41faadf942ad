"""Stage ``verify``: recompute the committed tables from the runs' own files and compare.

A committed table ships with the small per-run files it came from (``metrics.json``,
``test_users.csv``); this stage rebuilds the main tables and significance tests from them
into a scratch folder and checks that every CSV equals the one in the results folder, so a
reader can trust the tables without training anything:

    python -m deepm3.phase2 dataset=<name> preset=<preset> results_dir=<dir> 'studies=[verify]'
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.errors import DataError

log = logging.getLogger(__name__)

VERIFIED = ("main_table", "significance")  # the studies recomputed from per-run files alone


def verify_tables(out_dir: Path, recompute: Callable[[Path], object], rtol: float = 1e-9) -> list[str]:
    """Recompute into a scratch folder; every CSV written there must equal ``out_dir``'s copy.

    Returns the verified file names; raises ``DataError`` naming the first table that differs
    or is missing (a table with no committed copy cannot be verified).
    """
    with tempfile.TemporaryDirectory(prefix="deepm3-verify-") as scratch:
        tmp = Path(scratch)
        recompute(tmp)
        fresh = sorted(tmp.glob("*.csv"))
        if not fresh:
            raise DataError(f"verify: nothing to recompute in {out_dir} (no complete runs?)")
        for path in fresh:
            committed = out_dir / path.name
            if not committed.is_file():
                raise DataError(f"verify: {committed} is missing; the runs produce it (run the study stages first)")
            _compare(pd.read_csv(committed), pd.read_csv(path), committed, rtol)
    names = [p.name for p in fresh]
    log.info("verify: %d tables in %s match their recomputation from the per-run files", len(names), out_dir)
    print(f"verify: {len(names)} tables match their recomputation: {', '.join(names)}")
    return names


def _compare(committed: pd.DataFrame, fresh: pd.DataFrame, path: Path, rtol: float) -> None:
    if list(committed.columns) != list(fresh.columns) or len(committed) != len(fresh):
        raise DataError(
            f"verify: {path} differs from its recomputation (columns or rows: "
            f"{list(committed.columns)} x {len(committed)} vs {list(fresh.columns)} x {len(fresh)})"
        )
    for column in committed.columns:
        old, new = committed[column], fresh[column]
        if pd.api.types.is_numeric_dtype(old) and pd.api.types.is_numeric_dtype(new):
            same = np.isclose(old.to_numpy(float), new.to_numpy(float), rtol=rtol, atol=1e-12, equal_nan=True)
        else:
            same = (old.astype(str) == new.astype(str)).to_numpy()
        if not same.all():
            row = int(np.flatnonzero(~same)[0])
            raise DataError(
                f"verify: {path} differs from its recomputation at row {row}, column {column!r}: "
                f"{old.iloc[row]!r} committed vs {new.iloc[row]!r} recomputed"
            )
