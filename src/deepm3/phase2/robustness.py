"""Study 4, robustness (no re-training): every trained run re-evaluated on the same perturbed
test inputs for each noise sweep of the ``noise`` config group, plus the random topological
(and Shannon) entropy rate of the perturbed histories at each level.

The perturbed arrays are drawn once per (noise, level) with one seed and shared by every
model and seed, so differences between models are differences in how they use the inputs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deepm3.analysis.entropy import MEASURES, HistorySymboliser, entropy_under_noise, select_word_length
from deepm3.analysis.noise import Clean, NoiseOperator, NoiseSweep, PredictionInputs, perturb_samples
from deepm3.data.datamodule import SequenceDataModule
from deepm3.data.samples import SampleArrays
from deepm3.device import resolve_device
from deepm3.errors import ConfigError, DataError
from deepm3.models.module import RecModule
from deepm3.phase2.plan import Plan, RunSpec
from deepm3.phase2.plots import figure, save_png
from deepm3.phase2.progress import format_duration
from deepm3.phase2.results import write_table
from deepm3.phase2.train_all import CONF_DIR
from deepm3.run.checkpoint import Checkpoint
from deepm3.run.noise_eval import headline_metrics
from deepm3.run_dir import best_checkpoint, read_config

log = logging.getLogger(__name__)

METRICS_STEM = "robustness"
ENTROPY_STEM = "robustness_entropy"
PLOT = "robustness_curves.png"
CLEAN = "clean"


@dataclass
class LoadedRun:
    spec: RunSpec
    module: RecModule


def load_sweeps(names: Sequence[str]) -> list[NoiseSweep]:
    """``conf/noise/<name>.yaml`` instantiated, in the given order (``clean`` is always added)."""
    sweeps = []
    for name in names:
        path = CONF_DIR / "noise" / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (CONF_DIR / "noise").glob("*.yaml"))
            raise ConfigError(f"phase2: noise {name!r} has no config {path}; expected one of {known}")
        sweeps.append(instantiate(OmegaConf.load(path)))
    return [s for s in sweeps if s.name != CLEAN]


def check_same_inputs(specs: Sequence[RunSpec]) -> None:
    """Every run must have been tested on the same windows, or the same perturbation is not shared."""
    shapes = {
        spec.name: (str(cfg.dataset.name), int(cfg.dataset.max_len))
        for spec in specs
        for cfg in [read_config(spec.directory)]
    }
    if len(set(shapes.values())) > 1:
        raise DataError(
            f"robustness: runs differ in (dataset.name, dataset.max_len): {shapes}; "
            "every model must be tested on the same windows"
        )


def load_run(spec: RunSpec, num_items: int, device: torch.device) -> LoadedRun:
    """The run's module from its saved config, filled with the checkpoint it was tested with."""
    cfg = read_config(spec.directory)
    module = RecModule.from_config(cfg, num_items)
    Checkpoint.read(best_checkpoint(spec.directory)).load_into(module)
    return LoadedRun(spec, module.to(device).eval())


def test_datamodule(spec: RunSpec) -> SequenceDataModule:
    """The test split a run was evaluated on (the dataset config saved in its folder)."""
    cfg = read_config(spec.directory)
    datamodule = instantiate(cfg.dataset, seed=int(cfg.seed), _convert_="all")
    datamodule.setup()
    return datamodule


def evaluate(module: RecModule, samples: SampleArrays, batch_size: int, device: torch.device) -> dict[str, float]:
    """The headline full-ranking metrics of ``module`` on ``samples``, computed as the test stage
    computes them (history exclusion and its novel-target headline as in training); the same
    function reports a training run's own test-time noise (:mod:`deepm3.run.noise_eval`)."""
    return headline_metrics(module, samples, batch_size, device)


def perturbed_metrics(
    runs: list[LoadedRun],
    test: SampleArrays,
    operators: list[tuple[str, NoiseOperator]],
    num_items: int,
    noise_seed: int,
    batch_size: int,
    device: torch.device,
) -> pd.DataFrame:
    """One row per (noise, level, model, seed) with every metric.

    Re-testing every run under every condition takes a while on a large test split (tens of
    minutes on a CPU), so one progress line per condition says where it is."""
    records = []
    started = time.monotonic()
    for done, (noise, operator) in enumerate(operators, start=1):
        noisy = perturb_samples(test, operator, noise_seed, num_items)
        for loaded in runs:
            metrics = evaluate(loaded.module, noisy, batch_size, device)
            records.append(
                {
                    "noise": noise,
                    "level": operator.level,
                    "model": loaded.spec.model,
                    "seed": loaded.spec.seed,
                    **metrics,
                }
            )
        elapsed = time.monotonic() - started
        log.info(
            "robustness: %d of %d conditions (%s level %g, %d runs); elapsed %s, about %s left",
            done,
            len(operators),
            noise,
            operator.level,
            len(runs),
            format_duration(elapsed),
            format_duration(elapsed / done * (len(operators) - done)),
        )
    return pd.DataFrame.from_records(records)


def degradation(per_run: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean ± std over seeds of ``metric`` and of its relative drop vs the same run's clean value."""
    clean = per_run[per_run["noise"] == CLEAN].set_index(["model", "seed"])[metric]
    noisy = per_run.copy()
    reference = clean.reindex(pd.MultiIndex.from_frame(noisy[["model", "seed"]])).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        noisy["drop"] = np.where(reference > 0, 1.0 - noisy[metric].to_numpy() / reference, np.nan)
    grouped = noisy.groupby(["noise", "level", "model"], sort=False)
    out = grouped.agg(
        seeds=("seed", "nunique"),
        mean=(metric, "mean"),
        std=(metric, "std"),
        relative_drop=("drop", "mean"),
        relative_drop_std=("drop", "std"),
    ).reset_index()
    out.insert(3, "metric", metric)
    return out


def entropy_table(
    test: SampleArrays, sweeps: list[NoiseSweep], num_items: int, seeds: Sequence[int], channels: Sequence[str]
) -> pd.DataFrame:
    """Random entropy rate (topological and Shannon) of the perturbed histories, per channel.

    Bins and word length are fixed on the clean histories, so every level is measured alike.
    """
    clean = PredictionInputs.from_samples(test, num_items)
    records = []
    for channel in channels:
        symboliser = HistorySymboliser.fit(clean, channel=channel)
        symbols, valid = symboliser(clean)
        word_length, well_sampled = select_word_length(symbols, symboliser.alphabet_size, valid)
        for noise, operator in [(CLEAN, Clean(0.0))] + [(s.name, op) for s in sweeps for op in s.operators()]:
            for measure in MEASURES:
                estimate = entropy_under_noise(clean, operator, symboliser, list(seeds), word_length, measure)
                records.append(
                    {
                        "noise": noise,
                        "level": operator.level,
                        "channel": channel,
                        "measure": measure,
                        "entropy_rate": estimate.mean,
                        "entropy_std": estimate.std,
                        "word_length": word_length,
                        "alphabet": symboliser.alphabet_size,
                        "clean_well_sampled": well_sampled,
                    }
                )
    return pd.DataFrame.from_records(records)


def curves_plot(table: pd.DataFrame, metric: str):
    """One panel per noise kind: metric vs strength, one line per model (level 0 = clean)."""
    kinds = [k for k in dict.fromkeys(table["noise"]) if k != CLEAN]
    fig, axes = figure(columns=max(len(kinds), 1), width=3.6)
    clean = table[table["noise"] == CLEAN].set_index("model")
    for ax, kind in zip(axes, kinds):
        for model in dict.fromkeys(table["model"]):
            mine = table[(table["noise"] == kind) & (table["model"] == model)]
            levels = np.concatenate([[0.0], mine["level"].to_numpy(dtype=float)])
            means = np.concatenate([[clean.loc[model, "mean"]], mine["mean"].to_numpy(dtype=float)])
            stds = np.concatenate([[clean.loc[model, "std"]], mine["std"].to_numpy(dtype=float)])
            ax.errorbar(levels, means, yerr=np.nan_to_num(stds), marker="o", markersize=3, capsize=2, label=model)
        ax.set_title(kind)
        ax.set_xlabel("strength")
        ax.set_ylabel(metric)
    axes[0].legend(fontsize=7)
    return fig


def write_robustness(
    plan: Plan,
    out_dir: Path,
    noise: Sequence[str],
    metric: str = "ndcg@10",
    noise_seed: int = 0,
    entropy_seeds: Sequence[int] = (0, 1, 2),
    channels: Sequence[str] = ("gaps", "items"),
    device: str = "auto",
    batch_size: int = 256,
) -> list[Path]:
    completed = plan.completed()
    if not completed:
        return []
    check_same_inputs(completed)
    torch_device = resolve_device(device)
    sweeps = load_sweeps(noise)
    datamodule = test_datamodule(completed[0])
    test, num_items = datamodule.splits["test"], datamodule.num_items
    runs = [load_run(spec, num_items, torch_device) for spec in completed]
    operators = [(CLEAN, Clean(0.0))] + [(s.name, op) for s in sweeps for op in s.operators()]
    per_run = perturbed_metrics(runs, test, operators, num_items, noise_seed, batch_size, torch_device)
    table = degradation(per_run, metric)
    written = write_table(
        table,
        out_dir,
        METRICS_STEM,
        f"Robustness: {metric} under test-time noise (mean/std over seeds; relative drop vs clean; "
        f"noise seed {noise_seed}, same perturbed inputs for every model)",
    )
    written += write_table(per_run, out_dir, f"{METRICS_STEM}_runs", "Robustness, every run and metric")
    entropy = entropy_table(test, sweeps, num_items, entropy_seeds, channels)
    written += write_table(
        entropy,
        out_dir,
        ENTROPY_STEM,
        "Random entropy rate of the perturbed test histories (nats/symbol; mean ± std over "
        f"noise seeds {list(entropy_seeds)}; bins and word length fixed on the clean histories)",
    )
    written.append(save_png(curves_plot(table, metric), out_dir / PLOT))
    return written
