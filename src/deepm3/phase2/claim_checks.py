"""The five claims of the original DeepM3 work, each a :class:`Claim`: its statement, the rule's
text printed on the page, and the check that applies the rule to a study's tables, kept together.

A check returns :class:`~deepm3.phase2.claim_evidence.Measured` or raises
:class:`~deepm3.phase2.claim_evidence.Missing`; :mod:`deepm3.phase2.claims` turns either into a verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from deepm3.phase2 import tune
from deepm3.phase2.claim_evidence import (
    ALPHA,
    CLAIM1_NDCG,
    CLAIM1_TOLERANCE,
    CLAIM2_LIFT,
    CLAIM3_COLLAPSE,
    CLAIM3_DROP,
    CLAIM3_NOISE,
    CLAIM3_SMALL,
    CLAIM4_MAX_RATIO,
    CLAIM5_MATCHED,
    CLAIM5_OPPONENTS,
    EULER,
    FAILS,
    HOLDS,
    LARGE,
    MATCHED_SASREC,
    ORIGINAL,
    RK4,
    SASREC,
    TIME_AWARE_BASELINES,
    TRAINED_SIZE,
    UNTESTABLE,
    Lead,
    Measured,
    Missing,
    Study,
    _baselines,
    _pct,
    _row,
    _seed_row,
    _seed_text,
    seed_significant,
    significance_lead,
)

# -- the five claims ---------------------------------------------------------------------------
RULE1 = f"1: within ±{CLAIM1_TOLERANCE:.0%} of {CLAIM1_NDCG} (`main_table_sampled.csv`, row `{RK4}`); only on ML-1M."


def claim1(study: Study) -> Measured:
    table = study.table("main_table_sampled")
    row = _row(table, "model", RK4, "main_table_sampled")
    value, std = float(row["ndcg@10"]), float(row.get("ndcg@10_std", float("nan")))
    measured = (
        f"sampled NDCG@10 {value:.4f} ± {std:.4f} ({int(row['seeds'])} seeds), {RK4} on "
        f"{study.readable}{study.stand_in('dense')}"
    )
    source = "main_table_sampled.csv"
    if study.dataset != "ml1m":
        why = f"an absolute number on ML-1M; this study is {study.readable}, whose NDCG is not on the same scale"
        return Measured(measured, source, UNTESTABLE, why, (RK4,))
    off = value / CLAIM1_NDCG - 1
    verdict = HOLDS if abs(off) <= CLAIM1_TOLERANCE else FAILS
    return Measured(
        measured, source, verdict, f"{_pct(off)} from {CLAIM1_NDCG}; the rule allows ±{CLAIM1_TOLERANCE:.0%}", (RK4,)
    )


RULE2 = (
    "2: the reference's NDCG@10 lift over the strongest baseline (smallest lift) on the `high` gap-CV tertile is "
    "> 0 with its paired bootstrap 95% CI above 0 (a CI touching 0 does not hold; `irregularity_lifts.csv`) and "
    "the seed-level test on that tertile is significant and positive (`irregularity_seeds.csv`); dense dataset only."
)


def claim2(study: Study) -> Measured:
    table = study.table("irregularity_lifts")
    for column in ("baseline", "group", "lift", "ci_low", "ci_high"):
        if column not in table:
            raise Missing(f"irregularity_lifts.csv has no `{column}` column")
    high = _baselines(table[table["group"] == "high"], "baseline")
    high = high[high["lift"].astype(float).notna()]
    if high.empty:
        raise Missing("no baseline row with a lift on the `high` tertile in irregularity_lifts.csv")
    weakest = high.loc[high["lift"].astype(float).idxmin()]  # the lift over the strongest baseline there
    lift, low, up = float(weakest["lift"]), float(weakest["ci_low"]), float(weakest["ci_high"])
    users = f", {int(weakest['n_users'])} users" if "n_users" in weakest else ""
    reference = weakest.get("reference", study.reference)
    models = (study.reference, *high["baseline"].astype(str))
    source = "irregularity_lifts.csv, irregularity_seeds.csv"
    seeds = _seed_row(study, "irregularity_seeds", str(weakest["baseline"]), group="high")
    measured = (
        f"NDCG@10 lift of {reference} over the strongest baseline on the highest gap-CV tertile, "
        f"{weakest['baseline']}: {_pct(lift)} (95% CI {_pct(low)} to {_pct(up)}{users}; {_seed_text(seeds)}); "
        f"over each baseline {_pct(float(high['lift'].min()))} to {_pct(float(high['lift'].max()))}"
        f"{study.stand_in('dense')}"
    )
    if study.kind != "dense":
        why = f"the claim is about the dense dataset ({ORIGINAL['dense']}); this study is {study.readable}"
        return Measured(measured, source, UNTESTABLE, why, models)
    per_user, per_seed = lift > 0 and low > 0, seed_significant(seeds)
    verdict = HOLDS if per_user and per_seed else FAILS
    return Measured(
        measured,
        source,
        verdict,
        (
            f"rule: lift over the strongest baseline > 0 with its bootstrap 95% CI above 0 "
            f"{'[met]' if per_user else '[not met]'} and a significant positive seed-level test "
            f"{'[met]' if per_seed else '[not met]'}; claimed {_pct(CLAIM2_LIFT)}"
        ),
        models,
    )


RULE3 = (
    f"3: under {CLAIM3_NOISE[0]} at level {CLAIM3_NOISE[1]}, the reference loses at most {CLAIM3_SMALL:.0%} of its "
    f"NDCG@10 (exactly {CLAIM3_SMALL:.0%} holds) and every time-aware baseline ({', '.join(TIME_AWARE_BASELINES)}) "
    f"at least {CLAIM3_COLLAPSE:.0%} (exactly {CLAIM3_COLLAPSE:.0%} counts as a collapse) (`robustness.csv`, "
    "relative drop vs clean); sparse dataset only. Time-blind baselines cannot be hurt by time noise, so they are "
    "not asked to collapse."
)


def claim3(study: Study) -> Measured:
    table = study.table("robustness")
    noise, level = CLAIM3_NOISE
    for column in ("noise", "level", "model", "relative_drop"):
        if column not in table:
            raise Missing(f"robustness.csv has no `{column}` column")
    rows = table[(table["noise"] == noise) & ((table["level"].astype(float) - level).abs() < 1e-9)]
    if rows.empty:
        raise Missing(f"no {noise} level {level} rows in robustness.csv")
    drops = dict(zip(rows["model"].astype(str), rows["relative_drop"].astype(float)))
    if study.reference not in drops:
        raise Missing(f"no `{study.reference}` row at {noise} level {level} in robustness.csv")
    aware = {m: d for m, d in drops.items() if m in TIME_AWARE_BASELINES}
    others = ", ".join(f"{m} {_pct(d, False)}" for m, d in aware.items()) or "no time-aware baseline"
    measured = (
        f"relative NDCG@10 drop under {noise} at level {level}: {study.reference} "
        f"{_pct(drops[study.reference], False)}; {others}{study.stand_in('sparse')}"
    )
    models = (study.reference, *aware)
    if study.kind != "sparse":
        why = f"the claim is about the sparse dataset ({ORIGINAL['sparse']}); this study is {study.readable}"
        return Measured(measured, "robustness.csv", UNTESTABLE, why, models)
    if not aware:
        why = f"no time-aware baseline ({', '.join(TIME_AWARE_BASELINES)}) in robustness.csv to collapse"
        return Measured(measured, "robustness.csv", UNTESTABLE, why, models)
    small = drops[study.reference] <= CLAIM3_SMALL
    collapsed = all(d >= CLAIM3_COLLAPSE for d in aware.values())
    verdict = HOLDS if small and collapsed else FAILS
    return Measured(
        measured,
        "robustness.csv",
        verdict,
        (
            f"rule: DeepM3 drops at most {CLAIM3_SMALL:.0%} (claimed {_pct(CLAIM3_DROP, False)}) "
            f"{'[met]' if small else '[not met]'} and every time-aware baseline drops at least "
            f"{CLAIM3_COLLAPSE:.0%} {'[met]' if collapsed else '[not met]'}"
        ),
        models,
    )


RULE4 = (
    f"4: batch-1 latency of `{EULER}` / `{RK4}` <= {CLAIM4_MAX_RATIO:.2f} (exactly {CLAIM4_MAX_RATIO:.2f} holds; "
    f"`efficiency.csv`, the rows of the trained models at their own size and window, `size` = {TRAINED_SIZE}), and "
    f"`{EULER}` beats every baseline (every non-DeepM3 row) with a positive mean difference "
    f"and Holm-corrected paired t-test p < {ALPHA} over users (`significance.csv`, primary query mode) AND a "
    f"significant positive seed-level test (`significance_seeds.csv`); p = {ALPHA} exactly is not significant."
)


def _latency(study: Study) -> tuple[float, float]:
    """Batch-1 latency (ms) of the trained Euler and RK4 models; never a stand-in of another size."""
    efficiency = study.table("efficiency")
    if "size" not in efficiency:
        raise Missing(
            "efficiency.csv has no `size` column: its latency was measured on a hidden-64 stand-in, not the "
            "trained models (written before that rule)"
        )
    trained = efficiency[efficiency["size"].astype(str) == TRAINED_SIZE]
    return (
        float(_row(trained, "model", EULER, "efficiency")["latency_ms"]),
        float(_row(trained, "model", RK4, "efficiency")["latency_ms"]),
    )


def _lead_finding(study: Study) -> tuple[Lead, str, bool, list[str]]:
    lead = significance_lead(study, "significance")
    text = (
        f"{EULER} leads {len(lead.led)} of {len(lead.baselines)} baselines significantly on NDCG@10 at both "
        f"levels: {lead.detail}"
    )
    try:
        last = significance_lead(study, "significance_last")
        text += f" ({len(last.led)} of {len(last.baselines)} under time.query=last)"
    except Missing:
        pass
    missed = [f"per-user: {', '.join(lead.not_by_users)}"] if lead.not_by_users else []
    missed += [f"seed-level: {', '.join(lead.not_by_seeds)}"] if lead.not_by_seeds else []
    return lead, text, len(lead.led) == len(lead.baselines), missed


def claim4_lead(study: Study) -> Measured:
    """Claim 4's lead alone (no latency): what a cross-check study without an efficiency table can say."""
    lead, text, led, missed = _lead_finding(study)
    return Measured(
        f"{text} (the lead part of rule 4)",
        "significance.csv, significance_seeds.csv",
        HOLDS if led else FAILS,
        f"lead at both levels over every baseline {'[met]' if led else '[not met: ' + '; '.join(missed) + ']'}",
        (EULER, *lead.baselines),
    )


def claim4(study: Study) -> Measured:
    euler, rk4 = _latency(study)
    ratio = euler / rk4
    lead, text, led, missed = _lead_finding(study)
    measured = f"batch-1 latency at the trained size {EULER} {euler:.2f} ms / {RK4} {rk4:.2f} ms = {ratio:.2f}; {text}"
    fast = ratio <= CLAIM4_MAX_RATIO
    verdict = HOLDS if fast and led else FAILS
    return Measured(
        measured,
        "efficiency.csv, significance.csv, significance_seeds.csv",
        verdict,
        (
            f"rule: ratio <= {CLAIM4_MAX_RATIO:.2f} {'[met]' if fast else '[not met]'} and a positive difference "
            f"with p < {ALPHA} at both levels against every baseline "
            f"{'[met]' if led else '[not met: ' + '; '.join(missed) + ']'}"
        ),
        (EULER, *lead.baselines),
    )


RULE5 = (
    f"5: the opponent is the stronger on validation (`tune.csv`, each model's selected point; a tie goes to the "
    f"first) of `{SASREC}`, `{MATCHED_SASREC}` and `{LARGE}` among those with at least {CLAIM5_MATCHED:.0%} of the "
    "reference's parameters (matched or larger; "
    f"`main_table.csv`; none such: not testable), and neither the per-user test (negative difference with Holm "
    f"p < {ALPHA}, `significance.csv`) nor the seed-level test (negative t with p < {ALPHA}, "
    "`significance_seeds.csv`) finds the reference worse than it."
)


def validation_score(study: Study, model: str) -> float | None:
    """The validation score of ``model``'s selected tuning point (``tune.csv``), or None."""
    table = study.table(tune.STEM)
    scores = [c for c in table.columns if str(c).startswith("val/")]
    if not scores or "selected" not in table or "model" not in table:
        return None
    rows = table[(table["model"].astype(str) == model) & (table["selected"].astype(str).str.lower() == "true")]
    return None if rows.empty or pd.isna(rows.iloc[0][scores[0]]) else float(rows.iloc[0][scores[0]])


def claim5_opponent(study: Study, size: int, main: pd.DataFrame) -> tuple[str | None, str]:
    """``(opponent, how it was chosen)``: the stronger on validation of the SASRecs at matched or larger size."""
    sizes = {str(r["model"]): int(r["params"]) for _, r in main.iterrows() if str(r["model"]) in CLAIM5_OPPONENTS}
    if not sizes:
        raise Missing(f"no SASRec row ({', '.join(f'`{m}`' for m in CLAIM5_OPPONENTS)}) in main_table.csv")
    eligible = [m for m in CLAIM5_OPPONENTS if m in sizes and sizes[m] >= CLAIM5_MATCHED * size]
    listed = ", ".join(f"{m} {sizes[m]:,}" for m in CLAIM5_OPPONENTS if m in sizes)
    if not eligible:
        return None, f"parameters: {study.reference} {size:,}; {listed}"
    if len(eligible) == 1:
        return eligible[0], f"the only SASRec at matched or larger size ({listed} parameters)"
    scores = {m: validation_score(study, m) for m in eligible}
    unscored = [m for m, v in scores.items() if v is None]
    if unscored:
        raise Missing(f"no selected `{unscored[0]}` row with a validation score in tune.csv (claim 5 chooses on it)")
    best = max(eligible, key=lambda m: (scores[m], -eligible.index(m)))  # a tie: the first in CLAIM5_OPPONENTS
    shown = ", ".join(f"{m} {scores[m]:.4f}" for m in eligible)
    return best, f"the stronger on validation ({shown}; {listed} parameters)"


def claim5(study: Study) -> Measured:
    main = study.table("main_table")
    deepm3 = _row(main, "model", study.reference, "main_table")
    small = int(deepm3["params"])
    opponent, chosen = claim5_opponent(study, small, main)
    if opponent is None:
        why = f"no SASRec with at least {CLAIM5_MATCHED:.0%} of the reference's parameters in main_table.csv"
        return Measured(chosen, "main_table.csv", UNTESTABLE, why, (study.reference,))
    other = _row(main, "model", opponent, "main_table")
    significance = study.table("significance")
    if "baseline" not in significance or "reference" not in significance:
        raise Missing("significance.csv has no `reference`/`baseline` columns")
    rows = significance[
        (significance["reference"].astype(str) == study.reference) & (significance["baseline"].astype(str) == opponent)
    ]
    if rows.empty:
        raise Missing(f"no {study.reference}-vs-{opponent} row in significance.csv")
    difference, p = float(rows.iloc[0]["mean_difference"]), float(rows.iloc[0]["t_pvalue_holm"])
    seeds = _seed_row(study, "significance_seeds", opponent)
    big = int(other["params"])
    measured = (
        f"opponent {opponent}, {chosen}; NDCG@10 {study.reference} {float(deepm3['ndcg@10']):.4f} ({small:,} "
        f"parameters) vs {opponent} {float(other['ndcg@10']):.4f} ({big:,}, {big / small:.2f}x); difference "
        f"{difference:+.4f}, Holm p {p:.3g}, {_seed_text(seeds)} (parameter counts on {study.readable}; the claim's "
        "800K / 2.6M are ML-1M sizes)"
    )
    worse_users = difference < 0 and p < ALPHA
    worse_seeds = seed_significant(seeds, sign=-1)
    worse = worse_users or worse_seeds
    if worse:
        levels = [name for name, found in (("per user", worse_users), ("over seeds", worse_seeds)) if found]
        kind = f"significantly worse ({' and '.join(levels)})"
    elif difference > 0 and p < ALPHA and seed_significant(seeds):
        kind = "beats it at both levels"
    else:
        kind = "not significantly different at one level or both"
    return Measured(
        measured,
        "main_table.csv, tune.csv, significance.csv, significance_seeds.csv",
        FAILS if worse else HOLDS,
        (
            f"rule: against the stronger SASRec at matched or larger size, not significantly worse by either test "
            f"(p < {ALPHA} with a negative difference) {'[not met]' if worse else '[met]'}; measured: {kind}"
        ),
        (study.reference, opponent),
    )


@dataclass(frozen=True)
class Claim:
    """One claim of the original work: what it says, the rule that judges it (printed on the page)
    and the check that applies that rule; ``cross`` is what a fairer-budget cross-check study is
    asked instead of ``check`` (None: the claim's own check)."""

    statement: str
    rule: str
    check: Callable[[Study], Measured]
    cross: Callable[[Study], Measured] | None = None


CLAIMS: list[Claim] = [
    Claim(
        f"NDCG@10 {CLAIM1_NDCG} for DeepM3-RK4 on ML-1M (sampled evaluation, 100 negatives)",
        RULE1,
        claim1,
    ),
    Claim(
        f"{_pct(CLAIM2_LIFT)} significant NDCG@10 improvement on the most irregular sequences (highest gap-CV "
        "tertile) of the dense dataset",
        RULE2,
        claim2,
    ),
    Claim(
        f"Only a {_pct(CLAIM3_DROP, False)} NDCG drop under injected time noise on sparse Amazon Books, where other "
        "methods collapse",
        RULE3,
        claim3,
    ),
    Claim(
        "Euler halves latency against RK4 while keeping a significant lead over the baselines",
        RULE4,
        claim4,
        cross=claim4_lead,  # a cross-check study without an efficiency table can still say the lead
    ),
    Claim("DeepM3 at ~800K parameters rivals or beats SASRec at ~2.6M", RULE5, claim5),
]
RULES = [claim.rule for claim in CLAIMS]
