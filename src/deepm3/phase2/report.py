"""``results/<dataset>/README.md``: every table and plot of the study in one page, with the
command that produced it, the git commit, and the runs that are missing and why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from deepm3.io import write_atomic
from deepm3.models.components.time import QUERY_MODES
from deepm3.phase2.plan import Plan
from deepm3.phase2.results import run_metrics
from deepm3.provenance import code_version
from deepm3.run_dir import CONFIG_FILE, read_config, read_metrics

REPORT = "README.md"
CLAIMS = "claims.md"
MAIN_TABLES = [  # each also per secondary query mode (<stem>_<mode>: the primary mode has no suffix)
    ("main_table", "Main table (full ranking)"),
    ("main_table_sampled", "Sampled-mode table"),
    ("main_table_repeat", "Slice: targets already in the history"),
    ("main_table_novel", "Slice: targets new to the history"),
    ("main_table_per_sequence", "Per-sequence view (split by time)"),
]
SECTIONS = [  # (file stem or png, heading)
    ("tune", "Tuning of the baselines (validation, one seed)"),
    ("selection", "Selection on validation"),
    ("selection_test", "Selected models: test"),
    ("selection_significance", "Selected models: significance"),
    *[
        (f"{stem}{suffix}", f"{heading}{f', time.query={suffix[1:]}' if suffix else ''}")
        for stem, heading in MAIN_TABLES
        for suffix in ("", "_target", "_last")
    ],
    ("budget", "Epoch budget per model (the claims page's budget check)"),
    ("significance", "Significance"),
    *[
        (f"target_kinds{suffix}", f"Kinds of target (latest item, earlier item, new item){mode}")
        for suffix, mode in (("", ""), ("_target", ", time.query=target"), ("_last", ", time.query=last"))
    ],
    ("irregularity_tertiles", "Irregularity: metrics per gap-CV tertile"),
    ("irregularity_lifts", "Irregularity: lifts"),
    ("irregularity_lifts.png", "Irregularity: lift plot"),
    ("robustness", "Robustness"),
    ("robustness_curves.png", "Robustness: degradation curves"),
    ("robustness_entropy", "Random entropy of the perturbed histories"),
    ("efficiency", "Efficiency"),
    ("sensitivity", "Sensitivity of DeepM3"),
    ("sensitivity.png", "Sensitivity: line plots"),
]


def write_report(
    plan: Plan, out_dir: Path, commands: Sequence[str], notes: Sequence[str] = (), run_commands: Sequence[str] = ()
) -> Path:
    """Stitch the study files present in ``out_dir`` into its README.md. ``commands``: the
    command of the whole study first, then (if different) the invocation that wrote it."""
    lines = [f"# Phase 2 results: {plan.dataset}", ""]
    if (out_dir / CLAIMS).is_file():  # the page the project exists for comes first
        lines += [f"**The original claims, checked: [{CLAIMS}]({CLAIMS})** -- {claims_summary(out_dir / CLAIMS)}", ""]
    lines += [
        "The whole study (every stage; complete runs are skipped, so it also resumes):",
        "",
        "```",
        commands[0],
        "```",
        "",
    ]
    if len(commands) > 1:
        lines += ["This report was written by:", "", "```", *commands[1:], "```", ""]
    lines += [
        f"Report written at code version `{code_version()}`.",
        "",
        f"Runs: {len(plan.completed())} of {len(plan.runs)} complete ({len(plan.models)} models or variants), "
        f"in `runs/<model>-seed<k>/` (their `metrics.json`, `test_users.csv` and `.hydra/config.yaml` "
        f"are kept with the tables; `python -m deepm3.phase2 ... studies=[verify]` recomputes the "
        f"tables from them and checks they match).",
        "",
    ]
    lines += code_versions(plan)
    lines += _missing(plan)
    lines += budget(plan)
    for note in notes:
        lines += [f"> {note}", ""]
    for name, heading in _sections(out_dir):
        path = out_dir / (name if name.endswith(".png") else f"{name}.md")
        if not path.is_file():
            continue
        lines += [f"## {heading}", ""]
        if name.endswith(".png"):
            lines += [f"![{heading}]({path.name})", ""]
        else:
            lines += [path.read_text().strip(), "", f"Machine-readable: [`{name}.csv`]({name}.csv)", ""]
    if run_commands:
        lines += ["## Training command of each run", "", "```", *run_commands, "```", ""]
    lines += [
        "## Files",
        "",
        *[f"- `{p.name}`" for p in sorted(out_dir.iterdir()) if p.is_file() and p.name != REPORT],
        "",
    ]
    text = "\n".join(lines)
    return write_atomic(out_dir / REPORT, lambda tmp: tmp.write_text(text))


def claims_summary(path: Path) -> str:
    """The verdict count line of ``claims.md`` (its first bold line), or a pointer to it."""
    for line in path.read_text().splitlines():
        if line.startswith("**") and line.endswith("**"):
            return line.strip("*")
    return "each claim, what we measured and a verdict"


def code_versions(plan: Plan) -> list[str]:
    """Which code produced the complete runs; a loud warning when it is not one version."""
    versions: dict[str, list[str]] = {}
    for run in run_metrics(plan):
        version = (run.get("provenance") or {}).get("code_version", "unknown (no provenance recorded)")
        versions.setdefault(str(version), []).append(f"{run['model']}-seed{run['seed']}")
    if not versions:
        return []
    if len(versions) == 1:
        return [f"Code version of every run: `{next(iter(versions))}`.", ""]
    lines = [
        f"> **Warning: these tables mix runs of {len(versions)} code versions.** Numbers from different "
        "versions may not be comparable; re-run the older runs to remove this warning.",
        "",
        "| code version | runs |",
        "|---|---|",
    ]
    lines += [
        f"| `{version}` | {len(runs)}: {', '.join(runs[:6])}{' ...' if len(runs) > 6 else ''} |"
        for version, runs in versions.items()
    ]
    return [*lines, ""]


def budget(plan: Plan) -> list[str]:
    """Models whose runs trained for their whole epoch budget (``epochs == trainer.max_epochs``):
    early stopping did not end them, so they may be under-trained beside the others -- a
    comparison at this budget can favour the models that converge fast."""
    capped: dict[str, list[str]] = {}
    runs: dict[str, int] = {}
    for spec in plan.completed():
        if not (spec.directory / CONFIG_FILE).is_file():
            continue
        cap = OmegaConf.select(read_config(spec.directory), "trainer.max_epochs")
        epochs = read_metrics(spec.directory).get("epochs")
        runs[spec.model] = runs.get(spec.model, 0) + 1
        if isinstance(cap, int) and cap > 1 and isinstance(epochs, int) and epochs >= cap:
            capped.setdefault(spec.model, []).append(f"seed {spec.seed}")
    if not runs:
        return []
    if not capped:
        return ["Every run was ended by early stopping before its epoch budget (`trainer.max_epochs`).", ""]
    lines = [
        "## Runs that used their whole epoch budget",
        "",
        "Early stopping did not end these runs: they trained for all `trainer.max_epochs` epochs and may "
        "be under-trained beside the others, so this budget can favour the models that converge fast.",
        "",
        "| model | runs at the budget | runs |",
        "|---|---|---:|",
    ]
    lines += [f"| {model} | {len(seeds)}: {', '.join(seeds)} | {runs[model]} |" for model, seeds in capped.items()]
    return [*lines, ""]


def _sections(out_dir: Path) -> list[tuple[str, str]]:
    """SECTIONS, with each extra significance table (``significance_<ref>.md``) after the main one."""
    sections = []
    for name, heading in SECTIONS:
        sections.append((name, heading))
        if name == "significance":
            sections += [(p.stem, significance_heading(p.stem)) for p in sorted(out_dir.glob("significance_*.md"))]
    return sections


def significance_heading(stem: str) -> str:
    """``significance_<reference>_<mode>_seeds`` -> a heading naming each part present."""
    rest = stem.removeprefix("significance").removeprefix("_")
    seeds = rest.endswith("seeds")
    rest = rest.removesuffix("seeds").removesuffix("_")
    mode = next((m for m in QUERY_MODES if rest == m or rest.endswith(f"_{m}")), None)
    reference = rest.removesuffix(mode or "").removesuffix("_") if mode else rest
    return (
        "Significance"
        + (f" ({reference} as reference)" if reference else "")
        + (f", time.query={mode}" if mode else "")
        + (": seed-level view" if seeds else "")
    )


def _missing(plan: Plan) -> list[str]:
    missing = plan.missing()
    if not missing:
        return ["All planned runs are complete.", ""]
    lines = ["## Missing runs", "", "| run | reason |", "|---|---|"]
    for spec in missing:
        reason = spec.error() or "not run yet (no metrics.json, no error.json)"
        lines.append(f"| `{spec.name}` | {reason.splitlines()[0].replace('|', chr(92) + '|')} |")
    return [*lines, ""]
