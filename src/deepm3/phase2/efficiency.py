"""Study 7, efficiency: :func:`deepm3.bench.run` at this dataset's shape (items, window length
and users of the trained runs) -- parameters, training step time, batch-1 latency, throughput
at ``batch_size``, a full evaluation pass and peak memory, every model on one device in one
run -- next to the seconds per epoch each trained model actually took.

A latency claim must be about the model that was trained, so the table's rows named by the
study's labels (``size`` = ``trained``) are the trained networks themselves: each built from its
runs' own overrides (model, size, tuned settings and the preset's shared ones) at the runs'
window, and checked to have exactly the parameters its ``metrics.json`` records. The bench's
equal-size rows follow as ``<name>@hidden<h>`` (``size`` = ``hidden <h>``), an architecture
comparison at one width, with the flow the study's DeepM3 runs trained (the bench pins another)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose
from omegaconf import OmegaConf

from deepm3 import bench
from deepm3.errors import DataError
from deepm3.phase2.budget import NOT_TRAINED
from deepm3.phase2.plan import Plan
from deepm3.phase2.results import run_metrics, write_table
from deepm3.phase2.train_all import train_config_context
from deepm3.run_dir import CONFIG_FILE, read_config, read_metrics

STEM = "efficiency"
BENCH_JSON = "efficiency_bench.json"
FIELD_KEY = "model.net.field.kind"
BENCH_ROW_GROUPS = ("rows", "presets", "cuda_rows")
TRAINED = "trained"  # the `size` of a row that is a trained model of the study
SKIPPED_PREFIXES = ("dataset", "paths.", "hydra.", "+dataset")  # the bench gives the shape and the folders


def dataset_shape(plan: Plan) -> dict[str, int]:
    """``num_items``, ``max_len``, ``num_users`` of the first complete run."""
    spec = plan.completed()[0]
    data = run_metrics(Plan(plan.dataset, plan.results_dir, (spec,)))[0]["data"]
    max_len = int(read_config(spec.directory).dataset.max_len)
    return {"num_items": int(data["items"]), "max_len": max_len, "num_users": int(data["users"])}


def trained_field(plan: Plan) -> str | None:
    """The flow (``model.net.field.kind``) of the plan's complete DeepM3 runs; None when no run
    has one or the runs trained several (then the bench keeps its own rows)."""
    configs = [read_config(s.directory) for s in plan.completed() if (s.directory / CONFIG_FILE).is_file()]
    kinds = {OmegaConf.select(config, FIELD_KEY) for config in configs}
    kinds.discard(None)
    return str(kinds.pop()) if len(kinds) == 1 else None


def with_field(rows: dict[str, list[str]], kind: str) -> dict[str, list[str]]:
    """``rows`` with every DeepM3 row (``model=deepm3``) set to the flow ``kind``."""
    pinned = f"{FIELD_KEY}={kind}"
    return {
        name: [o for o in ov if not o.startswith(f"{FIELD_KEY}=")] + [pinned] if "model=deepm3" in ov else list(ov)
        for name, ov in rows.items()
    }


def trained_rows(plan: Plan, shared: Sequence[str] = ()) -> dict[str, list[str]]:
    """Label -> the overrides that build its trained network: the run's own after ``shared`` (the
    preset's and the command line's), as training composed them; models with nothing to train
    (``pop``...) and labels without a complete run are left out."""
    rows: dict[str, list[str]] = {}
    common = [str(o) for o in shared if not str(o).startswith(SKIPPED_PREFIXES)]
    for spec in plan.completed():
        if spec.model in rows or str(read_metrics(spec.directory).get("model", "")) in NOT_TRAINED:
            continue
        own = [o for o in spec.overrides if not o.startswith(SKIPPED_PREFIXES)]
        rows[spec.model] = [*common, *own]
    return rows


def check_trained_size(measured: dict[str, dict], plan: Plan, labels: Sequence[str]) -> None:
    """Each trained row must have its runs' parameter count, or the bench timed another network."""
    for label in labels:
        spec = next(s for s in plan.completed() if s.model == label)
        recorded = read_metrics(spec.directory).get("num_params")
        built = measured[label].get("params")
        if recorded is not None and built is not None and int(recorded) != int(built):
            raise DataError(
                f"efficiency: the bench's {label} has {int(built):,} parameters, its run {spec.name} "
                f"{int(recorded):,}: it did not rebuild the trained network (an override the bench cannot see?)"
            )


def _escaped(overrides: Sequence[str]) -> list[str]:
    return [o.replace("{", "{{").replace("}", "}}") for o in overrides]  # bench.run fills {hidden} in rows


def write_efficiency(
    plan: Plan, out_dir: Path, device: str = "auto", overrides: Sequence[str] = (), shared: Sequence[str] = ()
) -> list[Path]:
    """``efficiency.{csv,md}``: the trained models first (``size`` = trained), then the bench's
    equal-size rows; ``shared``: the training overrides every run had (preset and command line)."""
    if not plan.completed():
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    with train_config_context():  # bench composes each model's training config too
        cfg = compose(
            config_name="bench",
            overrides=[
                f"device={device}",
                f"output={out_dir / BENCH_JSON}",
                f"paths.output_dir={out_dir}",
                "~presets",
                *overrides,
            ],
        )
        cfg.sizes = {plan.dataset: dataset_shape(plan)}
        kind = trained_field(plan)
        if kind is not None:
            for group in BENCH_ROW_GROUPS:
                if cfg.get(group):
                    cfg[group] = with_field(OmegaConf.to_container(cfg[group]), kind)
        hidden = f"@hidden{cfg.hidden}"
        mine = trained_rows(plan, shared)
        equal = {f"{name}{hidden}": list(ov) for name, ov in OmegaConf.to_container(cfg.rows).items()}
        cfg.rows = {**{label: _escaped(ov) for label, ov in mine.items()}, **equal}
        report = bench.run(cfg)
    measured = report["results"][plan.dataset]
    check_trained_size(measured, plan, list(mine))
    table = pd.DataFrame.from_records([{"model": name, **values} for name, values in measured.items()])
    table.insert(1, "size", [TRAINED if name in mine else f"hidden {cfg.hidden}" for name in table["model"]])
    trained = pd.DataFrame.from_records(run_metrics(plan))
    per_epoch = trained.groupby("model")["seconds_per_epoch"].agg(lambda s: float(np.mean(s)))
    table["trained_seconds_per_epoch"] = table["model"].map(per_epoch)
    table.insert(0, "device", report["device"])
    field = "" if kind is None else f"; the {hidden} DeepM3 rows with the trained flow {FIELD_KEY}={kind}"
    shape = ", ".join(f"{k}={v}" for k, v in cfg.sizes[plan.dataset].items())
    written = write_table(
        table,
        out_dir,
        STEM,
        f"Efficiency on {report['device']} ({shape}; rows named by the study's labels are its trained models at "
        f"their own size and window (parameters checked against their runs), `{hidden}` rows the bench's "
        f"equal-size ones; batch {cfg.batch_size}{field}; trained_seconds_per_epoch: the phase-2 runs of the "
        "same label)",
        floatfmt=".4g",
    )
    return [*written, out_dir / BENCH_JSON]
