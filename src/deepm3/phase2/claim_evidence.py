"""What the claims are checked against and read with: the verdicts, the rules' thresholds, the
study folder (:class:`Study`, with its dataset's facts), what a check found (:class:`Measured`) and
the page's line (:class:`Finding`), and the seed-level evidence every comparison also needs.

:mod:`deepm3.phase2.claim_checks` holds the five claims; :mod:`deepm3.phase2.claims` writes the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

STEM = "claims"
HOLDS, FAILS, UNTESTABLE = "holds", "does not hold", "not testable here"
INCONCLUSIVE = "inconclusive (budget)"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, UNTESTABLE)

# -- the rules ---------------------------------------------------------------------------------
ALPHA = 0.05  # a p-value below this is significant; exactly 0.05 is not
CLAIM1_NDCG = 0.4078  # DeepM3-RK4, ML-1M, sampled NDCG@10 (100 negatives)
CLAIM1_TOLERANCE = 0.05  # holds within +-5% of the claimed number (relative)
CLAIM2_LIFT = 0.0227  # the claimed lift on the highest gap-CV tertile (its size is reported, the sign judged)
CLAIM3_NOISE = ("jitter", 1.0)  # the time noise of claim 3: timestamp jitter, std = the window's mean gap
CLAIM3_DROP = 0.0036  # the claimed relative NDCG@10 drop of DeepM3
CLAIM3_SMALL = 0.01  # DeepM3's drop counts as "only ~0.36%" up to 1%
CLAIM3_COLLAPSE = 0.10  # a baseline "collapses" when it loses at least 10% of its NDCG@10
TIME_AWARE_BASELINES = ("tisasrec", "gru_dt")  # the baselines time noise can hurt (the others ignore time)
CLAIM4_RATIO = 0.5  # Euler latency / RK4 latency ("halves")
CLAIM4_TOLERANCE = 0.1  # holds up to 0.5 x 1.1 = 0.55 ...
CLAIM4_MAX_RATIO = 0.55  # ... written out, so that a ratio of exactly 0.55 holds (0.5 * 1.1 > 0.55 in floats)
RK4, EULER, LARGE, SASREC = "deepm3-rk4", "deepm3-euler", "sasrec_large", "sasrec"
MATCHED_SASREC = "sasrec-matched"  # plain SASRec widened to DeepM3's size (the presets' row for claim 5)
CLAIM5_OPPONENTS = (SASREC, MATCHED_SASREC, LARGE)  # claim 5 faces the stronger of these on validation ...
CLAIM5_MATCHED = 0.9  # ... among those with at least 90% of the reference's parameters (matched or larger)
TRAINED_SIZE = "trained"  # efficiency.csv `size` of a row that is the study's trained model
DEEPM3_PREFIX = "deepm3"  # labels of DeepM3 variants; every other label is a baseline

ORIGINAL = {"dense": "ML-1M", "sparse": "Amazon Books"}  # the original work's dataset of each kind
DATASET_CONFIGS = Path(__file__).resolve().parents[1] / "conf" / "dataset"


@dataclass(frozen=True)
class Facts:
    """What the page says of a dataset: its readable name, its kind (dense, sparse or None) and
    whether it is the original work's dataset of that kind; the ``facts:`` block of its config
    (``conf/dataset/<name>.yaml``, defaults in ``base.yaml``)."""

    readable: str
    kind: str | None = None
    original: bool = False

    @classmethod
    def of(cls, dataset: str, block: Mapping[str, Any] | None = None) -> Facts:
        """From ``block`` (the composed config's ``dataset.facts``), else from the dataset's config
        file; a dataset with neither is known by its name alone."""
        if block is None:
            path = DATASET_CONFIGS / f"{dataset}.yaml"
            block = OmegaConf.load(path).get("facts") if path.is_file() else None
        block = block or {}
        kind = block.get("kind")
        return cls(
            str(block.get("readable") or dataset),
            None if kind is None else str(kind),
            bool(block.get("original", False)),
        )


@dataclass(frozen=True)
class Finding:
    """One claim's line on the page; ``budget`` names the budget check behind the verdict."""

    claim: int
    statement: str
    measured: str
    source: str
    verdict: str
    reason: str
    budget: str = ""
    tuning: str = ""
    cross_check: str = ""


@dataclass(frozen=True)
class Measured:
    """What a claim's check found, before the budget check: ``models`` are the labels whose
    trained runs the verdict rests on."""

    measured: str
    source: str
    verdict: str
    reason: str
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class Study:
    """What a claim is checked against: the study's folder, its dataset and reference model."""

    out_dir: Path
    dataset: str
    reference: str = EULER
    cross_check: str | None = None  # the folder of a fairer-budget study of the same data, as configured
    facts: Facts | None = None  # None: read from the dataset's config file

    def __post_init__(self) -> None:
        if self.facts is None:
            object.__setattr__(self, "facts", Facts.of(self.dataset))

    @property
    def readable(self) -> str:
        return self.facts.readable

    @property
    def kind(self) -> str | None:
        return self.facts.kind

    def stand_in(self, kind: str) -> str:
        """`` (ML-100k, not ML-1M)`` when this dataset stands in for the original of ``kind``."""
        if self.kind == kind and not self.facts.original:
            return f" (**{self.readable}, not {ORIGINAL[kind]}**)"
        return ""

    def table(self, stem: str) -> pd.DataFrame:
        path = self.out_dir / f"{stem}.csv"
        if not path.is_file():
            raise Missing(f"{path.name} missing")
        return pd.read_csv(path)


class Missing(Exception):
    """A table or row a claim needs is not there (the message says which)."""


def _row(table: pd.DataFrame, column: str, value: str, stem: str) -> pd.Series:
    if column not in table:
        raise Missing(f"{stem}.csv has no `{column}` column")
    rows = table[table[column].astype(str) == value]
    if rows.empty:
        raise Missing(f"no `{value}` row in {stem}.csv")
    return rows.iloc[0]


def _pct(value: float, signed: bool = True) -> str:
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.2f}%"


def _baselines(table: pd.DataFrame, column: str) -> pd.DataFrame:
    return table[~table[column].astype(str).str.startswith(DEEPM3_PREFIX)]


# -- seed-level evidence --------------------------------------------------------------------------
SEED_RULE = (
    "seed-level test: a paired t-test over the per-seed means of the two models (seed k against seed k, "
    "`*_seeds.csv`, uncorrected: a claim that every comparison must pass is an intersection-union test, "
    f"which keeps its level without correction); significant when p < {ALPHA} with the sign the claim needs"
)


def _seed_row(study: Study, stem: str, baseline: str, group: str | None = None) -> pd.Series:
    """The reference-vs-``baseline`` row of a seed-level table (``compare_seeds`` columns)."""
    table = study.table(stem)
    for column in ("reference", "baseline", "seed_t_statistic", "seed_t_pvalue", "shared_seeds"):
        if column not in table:
            raise Missing(f"{stem}.csv has no `{column}` column")
    rows = table[(table["reference"].astype(str) == study.reference) & (table["baseline"].astype(str) == baseline)]
    if group is not None:
        rows = rows[rows["group"].astype(str) == group] if "group" in rows else rows.iloc[0:0]
    if rows.empty:
        where = f" in group `{group}`" if group else ""
        raise Missing(f"no {study.reference}-vs-{baseline} row{where} in {stem}.csv")
    return rows.iloc[0]


def seed_significant(row: pd.Series, sign: int = 1) -> bool:
    """The seed-level test passes: p < ALPHA and the t statistic has the sign the claim needs."""
    t, p = float(row["seed_t_statistic"]), float(row["seed_t_pvalue"])
    return bool(np.isfinite(p) and p < ALPHA and np.sign(t) == sign)


def _seed_text(row: pd.Series) -> str:
    return f"seeds p {float(row['seed_t_pvalue']):.3g} over {int(row['shared_seeds'])}"


@dataclass(frozen=True)
class Lead:
    """The Euler reference against each baseline of one significance table, at both levels."""

    baselines: tuple[str, ...]
    led: tuple[str, ...]  # both tests significant and positive
    not_by_users: tuple[str, ...]  # per-user test not significant (or negative)
    not_by_seeds: tuple[str, ...]  # seed-level test not significant (or negative)
    detail: str  # every comparison with both p-values


def significance_lead(study: Study, stem: str) -> Lead:
    """Each baseline of ``<stem>.csv`` (Euler reference) with its per-user and seed-level test."""
    table = study.table(stem)
    for column in ("reference", "baseline", "mean_difference", "t_pvalue_holm"):
        if column not in table:
            raise Missing(f"{stem}.csv has no `{column}` column")
    mine = _baselines(table[table["reference"].astype(str) == EULER], "baseline")
    if mine.empty:
        raise Missing(
            f"no {EULER}-vs-baseline rows in {stem}.csv (its reference is "
            f"{', '.join(sorted(set(table['reference'].astype(str))))})"
        )
    euler = Study(study.out_dir, study.dataset, EULER, facts=study.facts)
    baselines, led, by_users, by_seeds, detail = [], [], [], [], []
    for row in mine.itertuples():
        baseline, difference, p = str(row.baseline), float(row.mean_difference), float(row.t_pvalue_holm)
        seeds = _seed_row(euler, f"{stem}_seeds", baseline)
        users_ok, seeds_ok = difference > 0 and p < ALPHA, seed_significant(seeds)
        baselines.append(baseline)
        if users_ok and seeds_ok:
            led.append(baseline)
        if not users_ok:
            by_users.append(baseline)
        if not seeds_ok:
            by_seeds.append(baseline)
        detail.append(f"{baseline} {difference:+.4f} (Holm p {p:.3g}; {_seed_text(seeds)})")
    return Lead(tuple(baselines), tuple(led), tuple(by_users), tuple(by_seeds), "; ".join(detail))
