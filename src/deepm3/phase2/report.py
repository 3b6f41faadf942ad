"""``results/<dataset>/README.md``: every table and plot of the study in one page, with the
command that produced it, the git commit, and the runs that are missing and why."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from deepm3.io import write_atomic
from deepm3.phase2.plan import Plan

REPORT = "README.md"
SECTIONS = [  # (file stem or png, heading)
    ("tune", "Tuning of the baselines (validation, one seed)"),
    ("main_table", "Main table (full ranking)"),
    ("main_table_sampled", "Sampled-mode table"),
    ("significance", "Significance"),
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


def git_commit(cwd: Path | None = None) -> str:
    """``git rev-parse HEAD`` (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head}-dirty" if dirty else head


def write_report(plan: Plan, out_dir: Path, commands: Sequence[str], notes: Sequence[str] = (),
                 run_commands: Sequence[str] = ()) -> Path:
    """Stitch the study files present in ``out_dir`` into its README.md."""
    lines = [f"# Phase 2 results: {plan.dataset}", "",
             "Produced by:", "", "```", *commands, "```", "",
             f"Git commit: `{git_commit(Path(__file__).parent)}`", "",
             f"Runs: {len(plan.completed())} of {len(plan.runs)} complete ({len(plan.models)} models or variants), "
             f"in `runs/<model>-seed<k>/` (not tracked by git).", ""]
    lines += _missing(plan)
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
    lines += ["## Files", "", *[f"- `{p.name}`" for p in sorted(out_dir.iterdir())
                                if p.is_file() and p.name != REPORT], ""]
    text = "\n".join(lines)
    return write_atomic(out_dir / REPORT, lambda tmp: tmp.write_text(text))


def _sections(out_dir: Path) -> list[tuple[str, str]]:
    """SECTIONS, with each extra significance table (``significance_<ref>.md``) after the main one."""
    sections = []
    for name, heading in SECTIONS:
        sections.append((name, heading))
        if name == "significance":
            sections += [(p.stem, f"Significance ({p.stem.removeprefix('significance_')} as reference)")
                         for p in sorted(out_dir.glob("significance_*.md"))]
    return sections


def _missing(plan: Plan) -> list[str]:
    missing = plan.missing()
    if not missing:
        return ["All planned runs are complete.", ""]
    lines = ["## Missing runs", "", "| run | reason |", "|---|---|"]
    for spec in missing:
        reason = spec.error() or "not run yet (no metrics.json, no error.json)"
        lines.append(f"| `{spec.name}` | {reason.splitlines()[0].replace('|', chr(92) + '|')} |")
    return [*lines, ""]


if __name__ == "__main__":
    from deepm3.phase2.cli import run_stage

    run_stage()
