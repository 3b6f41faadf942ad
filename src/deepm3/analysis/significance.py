"""Paired significance of the reference model against each baseline (docs/experiments.md, "Significance").

The unit is the user: both models are scored on the same users, so the tests are paired
(``scipy.stats.ttest_rel`` and the Wilcoxon signed-rank test on ``reference - baseline``).

**Zero differences.** Per-user NDCG@10 is 0 for both models whenever neither ranks the target
in its top 10, so most differences are exactly 0. The default ``zero_method="pratt"`` ranks
the zeros with the rest and then drops their ranks (Pratt 1959): the non-zero differences
keep the ranks they have among *all* users, so many ties do not inflate small differences.
``"wilcox"`` (drop zeros first) and ``"zsplit"`` are accepted. When every difference is 0
both tests report statistic 0 and p = 1 (scipy would return NaN or warn): identical models
are not evidence of anything.

**Effect sizes.** The mean difference; Cohen's ``d_z = mean(d) / sd(d)`` (paired, ``ddof=1``;
0 when all differences are 0, +-inf when they are equal and non-zero); the matched-pairs
rank-biserial ``r = (R+ - R-) / (R+ + R-)`` from the same ranks the Wilcoxon test uses
(in [-1, 1]; +1 = the reference wins every non-tied user).

**Multiple comparisons.** Holm-Bonferroni over the family of baselines, separately for each
test: the family-wise error of "DeepM3 beats some baseline" stays at alpha.

**The seed-level test** (:func:`compare_seeds`). Users are not independent experiments: every
user of one model shares its training run, so with thousands of users a per-user test can call
a difference significant that a second training seed would not reproduce. Beside the per-user
tests, each model's metric is averaged over users per seed and the two models are compared by
a paired t-test over the seeds both ran (seed k against seed k: the same data order and
initialisation seed). It is the test of "would another set of training runs agree?", with
``n_seeds - 1`` degrees of freedom (low power with 3 seeds; 5 is common). It is not
Holm-corrected: the claims that use it require every comparison to pass (an intersection-union
test keeps its level uncorrected). A verdict on the claims page needs both levels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from deepm3.analysis.per_user import model_order, seed_average, seed_counts
from deepm3.errors import ConfigError

ZERO_METHODS = ("pratt", "wilcox", "zsplit")


@dataclass(frozen=True)
class PairedComparison:
    """Tests and effect sizes for one reference/baseline pair over the same users."""

    n_users: int
    reference_mean: float
    baseline_mean: float
    mean_difference: float
    cohens_dz: float
    t_statistic: float
    t_pvalue: float
    wilcoxon_statistic: float
    wilcoxon_pvalue: float
    rank_biserial: float


def paired_comparison(reference: np.ndarray, baseline: np.ndarray, zero_method: str = "pratt") -> PairedComparison:
    """Paired t-test, Wilcoxon signed-rank and effect sizes of ``reference - baseline``."""
    _check_zero_method(zero_method)
    reference, baseline = np.asarray(reference, dtype=float), np.asarray(baseline, dtype=float)
    if reference.shape != baseline.shape or reference.ndim != 1 or len(reference) < 2:
        raise ValueError(f"paired arrays must be 1-D of equal length >= 2, got {reference.shape} and {baseline.shape}")
    diff = reference - baseline
    t_stat, t_p = _paired_t(reference, baseline)
    w_stat, w_p = _wilcoxon(reference, baseline, zero_method)
    return PairedComparison(
        n_users=len(diff),
        reference_mean=float(reference.mean()),
        baseline_mean=float(baseline.mean()),
        mean_difference=float(diff.mean()),
        cohens_dz=cohens_dz(diff),
        t_statistic=t_stat,
        t_pvalue=t_p,
        wilcoxon_statistic=w_stat,
        wilcoxon_pvalue=w_p,
        rank_biserial=rank_biserial(diff, zero_method),
    )


def cohens_dz(differences: np.ndarray) -> float:
    """Standardised mean of paired differences, ``mean / sd`` (ddof = 1)."""
    diff = np.asarray(differences, dtype=float)
    mean, sd = diff.mean(), diff.std(ddof=1)
    if sd == 0:
        return 0.0 if mean == 0 else float(np.copysign(np.inf, mean))
    return float(mean / sd)


def rank_biserial(differences: np.ndarray, zero_method: str = "pratt") -> float:
    """Matched-pairs rank-biserial correlation ``(R+ - R-) / (R+ + R-)`` (Kerby 2014)."""
    _check_zero_method(zero_method)
    diff = np.asarray(differences, dtype=float)
    if zero_method == "wilcox":
        diff = diff[diff != 0]
    ranks = stats.rankdata(np.abs(diff))
    plus, minus = ranks[diff > 0].sum(), ranks[diff < 0].sum()
    if zero_method == "zsplit":
        half_zero = ranks[diff == 0].sum() / 2
        plus, minus = plus + half_zero, minus + half_zero
    total = plus + minus
    return 0.0 if total == 0 else float((plus - minus) / total)


def holm_bonferroni(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (same order as given): reject where adjusted < alpha.

    The i-th smallest p is multiplied by ``m - i + 1``, then running maxima keep the
    adjusted values in the order of the raw ones, capped at 1.
    """
    p = np.asarray(pvalues, dtype=float)
    if np.isnan(p).any() or ((p < 0) | (p > 1)).any():
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (len(p) - np.arange(len(p)))
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def compare_to_reference(
    rows: pd.DataFrame,
    reference: str,
    metric: str = "ndcg@10",
    baselines: Iterable[str] | None = None,
    zero_method: str = "pratt",
) -> pd.DataFrame:
    """One row per baseline: seed-averaged per-user ``metric`` of ``reference`` vs the baseline.

    ``rows`` holds per-user rows of several models and seeds (see :mod:`per_user`); the
    Holm correction runs over the baselines compared here.
    """
    table = seed_average(rows, metric)
    seeds = seed_counts(rows)
    chosen = model_order(rows, reference, baselines)
    records = []
    for baseline in chosen:
        result = paired_comparison(table[reference].to_numpy(), table[baseline].to_numpy(), zero_method)
        records.append({"baseline": baseline, **asdict(result)})
    out = pd.DataFrame.from_records(records, columns=["baseline", *PairedComparison.__dataclass_fields__])
    out.insert(0, "reference", reference)
    out.insert(2, "metric", metric)
    out["t_pvalue_holm"] = holm_bonferroni(out["t_pvalue"]) if len(out) else []
    out["wilcoxon_pvalue_holm"] = holm_bonferroni(out["wilcoxon_pvalue"]) if len(out) else []
    out["zero_method"] = zero_method
    out["reference_seeds"] = seeds[reference]
    out["baseline_seeds"] = [seeds[b] for b in chosen]
    return out


def compare_seeds(
    rows: pd.DataFrame, reference: str, metric: str = "ndcg@10", baselines: Iterable[str] | None = None
) -> pd.DataFrame:
    """The seed-level view beside the per-user tests: each model's ``metric`` as mean ± std over
    its seeds, and a paired t-test over the seeds both models ran (seed k of one against seed k
    of the other; NaN with fewer than two shared seeds).

    The per-user tests say whether the seed-averaged models differ on these users; this says
    how much of a difference survives the spread between training runs (few seeds: low power).
    """
    per_seed = rows.groupby(["model", "seed"])[metric].mean()
    records = []
    for baseline in model_order(rows, reference, baselines):
        ref, base = per_seed.loc[reference], per_seed.loc[baseline]
        shared = sorted(set(ref.index) & set(base.index))
        t_stat, t_p = float("nan"), float("nan")
        if len(shared) >= 2:
            t_stat, t_p = _paired_t(ref.loc[shared].to_numpy(dtype=float), base.loc[shared].to_numpy(dtype=float))
        records.append(
            {
                "reference": reference,
                "baseline": baseline,
                "metric": metric,
                "shared_seeds": len(shared),
                "reference_mean": float(ref.mean()),
                "reference_std": float(ref.std(ddof=1)) if len(ref) > 1 else 0.0,
                "baseline_mean": float(base.mean()),
                "baseline_std": float(base.std(ddof=1)) if len(base) > 1 else 0.0,
                "seed_t_statistic": t_stat,
                "seed_t_pvalue": t_p,
            }
        )
    return pd.DataFrame.from_records(records)


def _paired_t(reference: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    diff = reference - baseline
    if not diff.any():
        return 0.0, 1.0
    if diff.std(ddof=1) == 0:  # every user moved by the same non-zero amount: scipy divides by 0
        return float(np.copysign(np.inf, diff.mean())), 0.0
    result = stats.ttest_rel(reference, baseline)
    return float(result.statistic), float(result.pvalue)


def _wilcoxon(reference: np.ndarray, baseline: np.ndarray, zero_method: str) -> tuple[float, float]:
    if not (reference - baseline).any():
        return 0.0, 1.0
    result = stats.wilcoxon(reference, baseline, zero_method=zero_method)
    return float(result.statistic), float(result.pvalue)


def _check_zero_method(zero_method: str) -> None:
    if zero_method not in ZERO_METHODS:
        raise ConfigError(f"zero_method={zero_method!r}; expected one of {list(ZERO_METHODS)}")
