"""``claims.md``: the five claims of the original DeepM3 work, each beside what this study
measured on the same metric, the file it was read from, and a verdict by an explicit rule.

This page is the reason the project exists, so it is built only from the study's own tables
(``main_table*.csv``, ``significance.csv``, ``irregularity_lifts.csv``, ``robustness.csv``,
``efficiency.csv``) and every rule is a constant below, repeated on the page and in
``docs/experiments.md``. A verdict is one of

- **holds**: the measured effect has the claimed sign and passes the claim's test; a comparison
  passes only when the per-user test (Holm-corrected p < ``ALPHA``, or a bootstrap CI above 0)
  AND the seed-level test (paired t-test over the per-seed means, p < ``ALPHA``, same sign) do;
- **does not hold**: it was measured and fails that test;
- **inconclusive (budget)**: it was measured, but a model it rests on stopped at its epoch cap in
  more than 10% of its trained runs (``budget.csv``, :mod:`deepm3.phase2.budget`): the number says
  how fast the models converge, not what they reach, so neither "holds" nor "does not hold";
- **not testable here**: a table it needs is missing (named), or the claim is about another
  kind of data than this study's (named, with the number we measured shown anyway).

Each claim is a :class:`~deepm3.phase2.claim_checks.Claim`: its statement, its rule's text (printed on
the page) and its check, kept together; the thresholds are constants in :mod:`deepm3.phase2.claim_evidence`.
Every line also names the tuning each side of it had (``tune.csv``: points, winner,
configurations, whether the grid brackets the winner) and, where the study config names one
(``cross_checks: {<dataset>: <folder>}``), the same rule applied to a study at a fairer budget
(e.g. the 100-epoch peer study of ML-100k): cited beside the verdict, never replacing it.

A claim about ML-1M measured on ML-100k (or about Amazon Books measured on Toys & Games) is
judged on the stand-in, and the page says so next to the number; only an absolute number
(claim 1) needs the original dataset itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from deepm3.io import write_atomic
from deepm3.phase2 import budget, tune
from deepm3.phase2.claim_checks import CLAIMS, RULES, Claim
from deepm3.phase2.claim_evidence import (
    EULER,
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    ORIGINAL,
    SEED_RULE,
    STEM,
    UNTESTABLE,
    VERDICTS,
    Facts,
    Finding,
    Missing,
    Study,
)
from deepm3.phase2.results import markdown

__all__ = ["CLAIMS", "FAILS", "HOLDS", "INCONCLUSIVE", "UNTESTABLE", "Claim", "Study", "check_claims", "write_claims"]

TUNING_RULE = (
    "tuning (column `tuning`, from `tune.csv`): each model's points on validation (one seed), its winner, the "
    "configurations it had (points x choices made on validation before this study, e.g. DeepM3's flow) and "
    f"whether the winner is bracketed (a winner on an edge adds points beyond it, up to {tune.MAX_EXTENSIONS})."
)
CROSS_RULE = (
    "cross-check (column `fairer-budget cross-check`): the same rule on a study of the same data at a fairer "
    "budget, where the study config names one (`cross_checks: {<dataset>: <folder>}`); cited, never replacing "
    "this study's verdict; a disagreement is named in `why`."
)


# -- the budget check ------------------------------------------------------------------------------
def budget_check(study: Study, models: Sequence[str]) -> tuple[bool, str]:
    """``(passes, the line naming it)``: every model in ``models`` passes :data:`budget.RULE`."""
    path = study.out_dir / f"{budget.STEM}.csv"
    if not path.is_file():
        return False, f"budget check not possible: {budget.STEM}.csv missing (a study written before the budget rule)"
    table = pd.read_csv(path)
    rows = {str(r.model): r for r in table.itertuples()} if "model" in table else {}
    failing, shares = [], []
    for model in dict.fromkeys(models):
        row = rows.get(model)
        if row is None:
            failing.append(f"{model}: no row in {budget.STEM}.csv")
        elif str(row.status) == budget.CAPPED:
            failing.append(f"{model} {int(row.at_cap)} of {int(row.trained_runs)} runs at the cap")
        elif not budget.passes(str(row.status)):
            failing.append(f"{model}: {row.status}")
        elif int(row.trained_runs):
            shares.append(int(row.at_cap) / int(row.trained_runs))
    if failing:
        return False, f"budget [not met: {'; '.join(failing)}]"
    most = f", at most {max(shares):.0%} of trained runs at the cap" if shares else ""
    return True, f"budget [met: {len(dict.fromkeys(models))} models{most}]"


# -- the tuning each side had, and the fairer-budget cross-check --------------------------------------
def _points(overrides: pd.Series) -> tuple[str, list[str]]:
    """``("optim.lr", ["0.001", "0.003"])`` for one-key points, else ``("", [whole points])``."""
    tokens = [str(o).split() for o in overrides]
    keys = {t.split("=", 1)[0] for point in tokens for t in point}
    if len(keys) == 1 and all(len(point) == 1 for point in tokens):
        return keys.pop(), [point[0].split("=", 1)[1] for point in tokens]
    return "", [" ".join(point) for point in tokens]


def tuning_line(study: Study, models: Sequence[str]) -> str:
    """The tuning of each model a verdict rests on, from ``tune.csv``: its points, the winner, the
    configurations it had on validation (with earlier choices such as DeepM3's flow) and whether
    the grid brackets the winner."""
    path = study.out_dir / f"{tune.STEM}.csv"
    if not path.is_file():
        return f"tuning: {path.name} missing (no model was tuned on validation in this study)"
    table = pd.read_csv(path)
    parts = []
    for model in dict.fromkeys(models):
        rows = table[table["model"].astype(str) == model] if "model" in table else table.iloc[0:0]
        if rows.empty:
            parts.append(f"{model} not tuned (its preset settings)")
            continue
        key, values = _points(rows["overrides"])
        won = rows[rows["selected"].astype(str).str.lower() == "true"]
        winner = _points(won["overrides"])[1][0] if len(won) else "none (every point failed)"
        count = int(rows["configurations"].iloc[0]) if "configurations" in rows else len(rows)
        prior = rows["prior_choices"].iloc[0] if "prior_choices" in rows else None
        prior = f" incl. {prior}" if isinstance(prior, str) and prior else ""
        status = str(rows["status"].iloc[0]) if "status" in rows else "bracketing not recorded"
        grid = f"{key} {{{', '.join(values)}}}" if key else "{" + "; ".join(values) + "}"
        parts.append(f"{model} {grid} -> {winner} ({count} configurations{prior}; {status})")
    return "tuning: " + "; ".join(parts)


def cross_check(study: Study, claim: Claim) -> tuple[str, str | None]:
    """``(the line, the verdict by the same rule there)`` for the configured fairer-budget study of
    this dataset; ``("", None)`` when there is none (or it is this very study)."""
    if not study.cross_check:
        return "", None
    folder = Path(study.cross_check)
    if folder.resolve() == Path(study.out_dir).resolve():
        return "", None
    where = f"cross-check at a fairer budget, `{study.cross_check}`"
    if not folder.is_dir():
        return f"{where}: folder not found", None
    other = Study(folder, study.dataset, study.reference, facts=study.facts)
    try:
        found = (claim.cross or claim.check)(other)
    except Missing as gap:
        return f"{where}: not measured there ({gap})", None
    _, budget_line = budget_check(other, found.models)
    why = f" ({found.reason})" if found.verdict == UNTESTABLE else ""
    return f"{where}: by the same rule '{found.verdict}'{why}: {found.measured} ({budget_line})", found.verdict


def check_claims(study: Study) -> list[Finding]:
    """Every claim checked against ``study``; a missing table is a verdict, never an exception.

    A measured verdict (holds or does not hold) whose models fail the budget check becomes
    :data:`INCONCLUSIVE`, and its reason says what the numbers alone would have said. Each line
    names the tuning of its models and the fairer-budget cross-check, if one is configured."""
    findings = []
    for number, claim in enumerate(CLAIMS, start=1):
        statement = claim.statement
        cross, elsewhere = cross_check(study, claim)
        try:
            found = claim.check(study)
        except Missing as gap:
            findings.append(
                Finding(
                    number,
                    statement,
                    "—",
                    "",
                    UNTESTABLE,
                    str(gap),
                    "budget check not applied (not measured)",
                    "tuning: not applied (not measured)",
                    cross,
                )
            )
            continue
        ok, line = budget_check(study, found.models)
        verdict, reason = found.verdict, found.reason
        if elsewhere in (HOLDS, FAILS) and verdict in (HOLDS, FAILS) and elsewhere != verdict:
            reason += f"; the fairer-budget cross-check says '{elsewhere}'"
        if verdict in (HOLDS, FAILS) and not ok:
            verdict, reason = (
                INCONCLUSIVE,
                f"at a converged budget the rule would decide; here it says '{verdict}'. {reason}",
            )
        tuning = tuning_line(study, found.models)
        findings.append(Finding(number, statement, found.measured, found.source, verdict, reason, line, tuning, cross))
    return findings


def write_claims(
    out_dir: Path,
    dataset: str,
    reference: str = EULER,
    cross_checks: Mapping[str, str] | None = None,
    facts: Mapping[str, Any] | None = None,
) -> list[Path]:
    """``claims.{csv,md}`` in ``out_dir`` from the study files already there; ``cross_checks``:
    dataset name -> the folder of a fairer-budget study of it, cited on each line; ``facts``: the
    composed config's ``dataset.facts`` (None: the dataset's config file's)."""
    cross = (cross_checks or {}).get(dataset)
    study = Study(Path(out_dir), dataset, reference, None if cross is None else str(cross), Facts.of(dataset, facts))
    findings = check_claims(study)
    frame = pd.DataFrame([f.__dict__ for f in findings])
    shown = pd.DataFrame(
        {
            "#": [f.claim for f in findings],
            "claim (original work)": [f.statement for f in findings],
            "measured here (same metric)": [f.measured for f in findings],
            "from": [" ".join(f"`{s.strip()}`" for s in f.source.split(",") if s.strip()) for f in findings],
            "verdict": [f"**{f.verdict}**" for f in findings],
            "why": [f.reason for f in findings],
            "budget check": [f.budget for f in findings],
            "tuning": [f.tuning for f in findings],
            "fairer-budget cross-check": [f.cross_check or "none configured" for f in findings],
        }
    )
    kind = study.kind
    where = f"{study.readable}, the {kind} dataset of this project" if kind else study.readable
    if kind and not study.facts.original:
        where += f" (standing in for {ORIGINAL[kind]}, which the original work used)"
    counts = {v: sum(f.verdict == v for f in findings) for v in VERDICTS}
    lines = [
        f"# The original claims, checked on {study.readable}",
        "",
        f"Dataset: {where}. Every number below is read from this folder's tables (the file is named in "
        f"each row); a claim about the other kind of data is marked not testable, with our number shown.",
        "",
        f"**{counts[HOLDS]} {'holds' if counts[HOLDS] == 1 else 'hold'}, {counts[FAILS]} "
        f"{'does' if counts[FAILS] == 1 else 'do'} not hold, {counts[INCONCLUSIVE]} inconclusive (budget), "
        f"{counts[UNTESTABLE]} not testable here.**",
        "",
        markdown(shown),
        "",
        "## Verdict rules",
        "",
        f"Reference model: `{reference}`. A verdict is *{HOLDS}* when the measured effect has the claimed sign "
        f"and passes the rule below (a comparison at both levels: per user and over seeds), *{FAILS}* when it was "
        f"measured and fails it, *{INCONCLUSIVE}* when it was measured but a model it rests on fails the budget "
        f"check, *{UNTESTABLE}* when a table it needs is missing or the claim is about another kind of data "
        '(docs/experiments.md, "Claims").',
        "",
        *[f"- {rule}" for rule in RULES],
        f"- {budget.RULE} (`{budget.STEM}.csv`).",
        f"- {SEED_RULE}.",
        f"- {TUNING_RULE}",
        f"- {CROSS_RULE}",
        "",
    ]
    text = "\n".join(lines)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    csv = write_atomic(Path(out_dir) / f"{STEM}.csv", lambda tmp: frame.to_csv(tmp, index=False))
    md = write_atomic(Path(out_dir) / f"{STEM}.md", lambda tmp: tmp.write_text(text))
    return [csv, md]
