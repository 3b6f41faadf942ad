"""Stage ``verify``: recompute the committed tables from the runs' own files and compare.

A committed table ships with the small per-run files it came from (``metrics.json``,
``test_users.csv``, ``.hydra/config.yaml``); this stage rebuilds, into a scratch folder, every
table whose computation needs no training and no re-testing -- tuning, main tables, significance
(per user and per seed), target kinds (which read the test split, so the dataset must be at hand),
irregularity, selection, the epoch budget, sensitivity and the claims page -- and checks that every
CSV equals the one in the results folder, so a reader can trust the tables without training anything:

    python -m deepm3.phase2 dataset=<name> preset=<preset> results_dir=<dir> 'studies=[verify]'

Two studies are not recomputed in full, and the output says why (:data:`SKIPPED`): robustness
re-tests every checkpoint on perturbed inputs, efficiency re-runs a speed benchmark. Of robustness,
what needs no re-testing is checked (:func:`robustness_from_runs`): ``robustness.csv`` is
recomputed from the committed per-run table, whose clean rows must equal each run's own
``metrics.json``. The claims page is recomputed from the recomputed tables plus the committed
ones of those studies as they are.

A recomputed table the folder does not have (its stage was not run there, e.g. a peer study
without irregularity) is named, not an error. A study written before the budget and seed-level
rules (no ``budget.csv``) still verifies: its tables are compared on the columns they have, and
its ``claims.csv`` (verdicts by the older rules) is named as not comparable. So is a ``claims.csv``
without the ``tuning`` column (before every line named its tuning and cross-check, claim 5 faced
the stronger SASRec and claim 4 read the trained size), and a ``tune.csv`` without ``status``
(before bracketing) is compared on its own columns. A study is verified under the preset it was
trained with (the committed ML-100k and Toys studies: ``study_cpu_v1``, ``study_cpu_sparse_v1``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepm3.errors import DataError, DeepM3Error
from deepm3.phase2.plan import Plan
from deepm3.phase2.results import write_table
from deepm3.phase2.robustness import CLEAN, METRICS_STEM, degradation
from deepm3.run_dir import read_metrics

log = logging.getLogger(__name__)

# the stages recomputed from per-run files alone (tune and sensitivity are added when the preset has them)
VERIFIED = ("main_table", "significance", "target_kinds", "irregularity", "selection", "budget")
SKIPPED = {  # stage -> why verify cannot recompute it
    "robustness": "robustness_runs.csv and robustness_entropy.csv need every checkpoint re-tested on perturbed "
    "inputs; robustness.csv is recomputed from robustness_runs.csv, whose clean rows are checked against "
    "each run's metrics.json",
    "efficiency": "re-runs a speed benchmark; timings of another machine or moment are not reproducible",
}
CARRIED = ("robustness*.csv", "efficiency.csv")  # committed tables of SKIPPED studies the claims page reads
CLAIMS_CSV = "claims.csv"
RULES_MARKER = "budget.csv"  # written by every study since the budget and seed-level rules
BEFORE_RULES = "written before the budget and seed-level rules"
TUNE_CSV, TUNE_MARKER = "tune.csv", "status"  # tune.csv's per-model status came with grid bracketing
CLAIMS_MARKER = "tuning"  # a claims.csv column since every verdict line names its tuning and cross-check
BEFORE_TUNING_RULES = "written before these rules (every line naming its tuning and fairer-budget cross-check)"


@dataclass
class Verified:
    """What ``verify`` checked, and what it could not."""

    matched: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # recomputed, but the study has no such table
    not_compared: dict[str, str] = field(default_factory=dict)  # file -> why
    new_columns: dict[str, list[str]] = field(default_factory=dict)  # file -> columns the committed copy lacks
    before_rules: bool = False  # the study predates the budget and seed-level rules (no budget.csv)


def before_rules(out_dir: Path) -> bool:
    """Whether the study in ``out_dir`` predates the budget and seed-level rules (no ``budget.csv``)."""
    return not (Path(out_dir) / RULES_MARKER).is_file()


def verify_study(
    out_dir: Path,
    steps: Mapping[str, Callable[[Path], object]],
    claims: Callable[[Path], object] | None = None,
    rtol: float = 1e-9,
) -> Verified:
    """Run each recompute step (stage name -> writes its tables into a folder) into a scratch folder,
    then ``claims`` there (with the committed tables of :data:`SKIPPED` studies copied in), and
    compare every CSV with ``out_dir``'s copy.

    Raises ``DataError`` naming the first table that differs; a step that cannot run
    (a :class:`DeepM3Error`, e.g. no reference run yet) recomputes nothing, as its stage would.
    """
    out_dir = Path(out_dir)
    old = before_rules(out_dir)
    result = Verified(before_rules=old)
    with tempfile.TemporaryDirectory(prefix="deepm3-verify-") as scratch:
        tmp = Path(scratch)
        for name, step in steps.items():
            try:
                step(tmp)
            except DeepM3Error as exc:
                log.info("verify: study %s recomputes nothing: %s", name, exc)
        carried = {p.name for pattern in CARRIED for p in out_dir.glob(pattern) if not (tmp / p.name).exists()}
        if claims is not None and any(tmp.glob("*.csv")):
            for name in carried:
                shutil.copyfile(out_dir / name, tmp / name)
            claims(tmp)
        fresh = sorted(p for p in tmp.glob("*.csv") if p.name not in carried)
        if not fresh:
            raise DataError(f"verify: nothing to recompute in {out_dir} (no complete runs?)")
        for path in fresh:
            _check(out_dir / path.name, path, old, rtol, result)
    _say(out_dir, result)
    return result


def _check(committed: Path, path: Path, old: bool, rtol: float, result: Verified) -> None:
    if not committed.is_file():
        result.absent.append(path.name)
        return
    if old and path.name == CLAIMS_CSV:
        result.not_compared[path.name] = f"its verdicts were {BEFORE_RULES}"
        return
    mine, theirs = pd.read_csv(committed), pd.read_csv(path)
    if path.name == CLAIMS_CSV and CLAIMS_MARKER not in mine:  # claims 4 and 5 were judged otherwise then
        result.not_compared[path.name] = f"its verdicts were {BEFORE_TUNING_RULES}"
        return
    added = [c for c in theirs.columns if c not in mine.columns]
    bracketing = path.name == TUNE_CSV and TUNE_MARKER not in mine  # a tuning table before the bracketing rule
    if (old or bracketing) and added:  # a column these rules added: compare the ones the committed table has
        result.new_columns[path.name] = added
        theirs = theirs[[c for c in theirs.columns if c in mine.columns]]
    _compare(mine, theirs, committed, rtol)
    result.matched.append(path.name)


def _say(out_dir: Path, result: Verified) -> None:
    names = result.matched
    log.info("verify: %d tables in %s match their recomputation from the per-run files", len(names), out_dir)
    print(f"verify: {len(names)} tables match their recomputation: {', '.join(names)}")
    print(
        "verify: not recomputed: "
        + "; ".join(f"{stage} ({why})" for stage, why in SKIPPED.items())
        + "; the claims page reads their committed tables as they are"
    )
    if result.absent:
        print(f"verify: recomputed, but not in this study (stages it did not run): {', '.join(result.absent)}")
    if result.before_rules and (result.not_compared or result.new_columns or RULES_MARKER in result.absent):
        lines = [f"verify: this study was {BEFORE_RULES} (no {RULES_MARKER})"]
        for name, why in result.not_compared.items():
            lines.append(f"  {name} not compared: {why}")
        for name, columns in result.new_columns.items():
            lines.append(f"  {name} compared without the columns these rules add: {', '.join(columns)}")
        print("\n".join(lines))
    elif result.not_compared or result.new_columns:
        lines = [f"verify: {name} not compared: {why}" for name, why in result.not_compared.items()]
        lines += [
            f"verify: {name} compared without the columns newer rules add: {', '.join(columns)}"
            for name, columns in result.new_columns.items()
        ]
        print("\n".join(lines))


def robustness_from_runs(
    plan: Plan, out_dir: Path, into: Path, metric: str = "ndcg@10", atol: float = 1e-5
) -> list[Path]:
    """``robustness.csv`` recomputed into ``into`` from ``out_dir``'s ``robustness_runs.csv`` (the
    re-tested numbers of every run), once that table's clean rows equal each run's ``metrics.json``
    test numbers (to ``atol``: the re-test ranks in another batch order). Nothing without the table."""
    path = Path(out_dir) / f"{METRICS_STEM}_runs.csv"
    if not path.is_file():
        return []
    per_run = pd.read_csv(path)
    runs = {(spec.model, spec.seed): spec.directory for spec in plan.completed()}
    for row in per_run[per_run["noise"] == CLEAN].to_dict("records"):
        directory = runs.get((str(row["model"]), int(row["seed"])))
        if directory is None:
            raise DataError(
                f"verify: {path} has a clean row of {row['model']} seed {row['seed']}, a run this plan lacks"
            )
        tested = read_metrics(directory).get("test", {})
        for name, value in tested.items():
            if name in row and not np.isclose(float(row[name]), float(value), rtol=0, atol=atol):
                raise DataError(
                    f"verify: {path}'s clean row of {row['model']} seed {row['seed']} has {name} {row[name]!r}, "
                    f"its metrics.json {value!r}"
                )
    return write_table(degradation(per_run, metric), Path(into), METRICS_STEM, "Robustness (recomputed)")


def verify_tables(out_dir: Path, recompute: Callable[[Path], object], rtol: float = 1e-9) -> list[str]:
    """The tables ``recompute`` writes, checked against ``out_dir`` (:func:`verify_study` with one step)."""
    return verify_study(out_dir, {"tables": recompute}, rtol=rtol).matched


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
            same = ((old.astype(str) == new.astype(str)) | (old.isna() & new.isna())).to_numpy(bool)
        if not same.all():
            row = int(np.flatnonzero(~same)[0])
            raise DataError(
                f"verify: {path} differs from its recomputation at row {row}, column {column!r}: "
                f"{old.iloc[row]!r} committed vs {new.iloc[row]!r} recomputed"
            )
