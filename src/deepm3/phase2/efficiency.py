"""Study 7, efficiency: :func:`deepm3.bench.run` at this dataset's shape (items, window length
and users of the trained runs) -- parameters, training step time, batch-1 latency, throughput
at ``batch_size``, a full evaluation pass and peak memory, every model on one device in one
run -- next to the seconds per epoch each trained model actually took.

The bench's DeepM3 rows pin the between-events flow ``docs/speed.md`` measured; here they are
given the flow the study's DeepM3 runs trained, so a latency claim is about the trained model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose
from omegaconf import OmegaConf

from deepm3 import bench
from deepm3.phase2.plan import Plan
from deepm3.phase2.results import run_metrics, write_table
from deepm3.phase2.train_all import train_config_context
from deepm3.run_dir import CONFIG_FILE, read_config

STEM = "efficiency"
BENCH_JSON = "efficiency_bench.json"
FIELD_KEY = "model.net.field.kind"
BENCH_ROW_GROUPS = ("rows", "presets", "cuda_rows")


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


def write_efficiency(plan: Plan, out_dir: Path, device: str = "auto", overrides: Sequence[str] = ()) -> list[Path]:
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
        report = bench.run(cfg)
    measured = report["results"][plan.dataset]
    table = pd.DataFrame.from_records([{"model": name, **values} for name, values in measured.items()])
    trained = pd.DataFrame.from_records(run_metrics(plan))
    per_epoch = trained.groupby("model")["seconds_per_epoch"].agg(lambda s: float(np.mean(s)))
    table["trained_seconds_per_epoch"] = table["model"].map(per_epoch)
    table.insert(0, "device", report["device"])
    field = "" if kind is None else f"; DeepM3 rows with the trained flow {FIELD_KEY}={kind}"
    shape = ", ".join(f"{k}={v}" for k, v in cfg.sizes[plan.dataset].items())
    written = write_table(
        table,
        out_dir,
        STEM,
        f"Efficiency on {report['device']} ({shape}; bench rows at hidden={cfg.hidden}, batch "
        f"{cfg.batch_size}{field}; trained_seconds_per_epoch: the phase-2 runs of the same label)",
        floatfmt=".4g",
    )
    return [*written, out_dir / BENCH_JSON]
