"""Noise is part of the training config: the test stage also reports the metrics under it, and
a multirun over noise levels trains each (model, solver) once and re-tests its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from deepm3.errors import ConfigError
from deepm3.run.identity import training_key
from deepm3.run.noise_eval import find_reusable_run, noise_setting
from tests.helpers.tiny_runs import FAST_TRAINER, compose_train, tiny_dataset, tiny_run

REPO = Path(__file__).resolve().parents[1]
SMALL = ["model.net.hidden=16"]


def test_clean_is_the_default_and_reports_nothing_extra() -> None:
    assert noise_setting(compose_train([])) is None


def test_the_noise_and_level_of_the_command_line_become_the_test_time_operator() -> None:
    setting = noise_setting(compose_train(["noise=jitter", "noise.level=0.5"]))
    assert (setting.name, setting.level, setting.seed) == ("jitter", 0.5, 0)
    assert setting.operator.level == 0.5


@pytest.mark.parametrize(
    "noise, override, message",
    [
        ("jitter", "noise.level=abc", "noise.level='abc'; expected a number"),
        ("jitter", "noise.level=-1", "noise jitter: level=-1.0"),
        ("clean", "noise.level=0.5", "noise clean: level=0.5"),  # not silently ignored
    ],
)
def test_a_bad_level_is_one_line_before_any_data_is_read(noise: str, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        noise_setting(compose_train([f"noise={noise}", override]))


def test_the_training_key_ignores_noise_and_folders_but_not_what_is_trained() -> None:
    base = training_key(compose_train(["model=sasrec"]))
    assert (
        training_key(
            compose_train(["model=sasrec", "noise=drop", "noise.level=1.0", "paths.output_dir=/x", "paths.data_dir=/y"])
        )
        == base
    )
    assert training_key(compose_train(["model=sasrec", "seed=1"])) != base
    assert training_key(compose_train(["model=sasrec", "solver=rk4"])) != base  # part of the config, kept


@pytest.mark.parametrize("exclude_history", ["false", "true"])
def test_at_level_zero_the_noisy_metrics_are_the_test_metrics(tmp_path: Path, exclude_history: str) -> None:
    """The noisy evaluation is the test stage's own computation on perturbed inputs."""
    metrics = tiny_run(
        tmp_path / "run",
        tmp_path / "data",
        *SMALL,
        "noise=jitter",
        "noise.level=0.0",
        f"eval.exclude_history={exclude_history}",
    )
    assert metrics["noise"] == {"name": "jitter", "level": 0.0, "seed": 0}
    assert metrics["noisy"] == pytest.approx(
        {k: v for k, v in metrics["test"].items() if k in metrics["noisy"]}, abs=1e-6
    )
    assert set(metrics["noisy"]) == {f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in (5, 10, 20)}
    logged = (tmp_path / "run" / "logs" / "metrics.csv").read_text().splitlines()[0]
    assert "test/noisy_ndcg@10" in logged


def test_a_runs_noisy_metrics_are_the_robustness_studys_numbers_for_that_noise_and_level(tmp_path: Path) -> None:
    """One perturbation (noise.seed = the study's noise_seed, 0): the two measurements agree."""
    from deepm3.phase2.plan import make_plan
    from deepm3.phase2.robustness import write_robustness

    plan = make_plan("tiny", {"deepm3-euler": []}, [0], tmp_path / "results")
    run_dir = plan.runs[0].directory
    metrics = tiny_run(run_dir, tmp_path / "data", *SMALL, "noise=item_replace", "noise.level=0.25")
    assert metrics["noisy"]["mrr@20"] != pytest.approx(metrics["test"]["mrr@20"])  # the noise did something
    write_robustness(
        plan, tmp_path / "out", ["item_replace"], noise_seed=0, entropy_seeds=[0], channels=["items"], device="cpu"
    )
    rows = pd.read_csv(tmp_path / "out" / "robustness_runs.csv")
    row = rows[(rows["noise"] == "item_replace") & (rows["level"] == 0.25)].iloc[0]
    assert {k: row[k] for k in metrics["noisy"]} == pytest.approx(metrics["noisy"], abs=1e-6)


def test_a_clean_run_has_no_noisy_block_but_records_its_training_key(tmp_path: Path) -> None:
    metrics = tiny_run(tmp_path / "run", tmp_path / "data", "model=pop")
    assert "noisy" not in metrics and len(metrics["training_key"]) == 16


def test_only_a_complete_sibling_with_the_same_key_and_its_checkpoint_is_reused(tmp_path: Path) -> None:
    def sibling(name: str, key: str, checkpoint: bool = True) -> Path:
        folder = tmp_path / name
        (folder / "checkpoints").mkdir(parents=True)
        if checkpoint:
            (folder / "checkpoints" / "best-epoch000.ckpt").write_bytes(b"x")
        (folder / "metrics.json").write_text(
            json.dumps({"training_key": key, "best_checkpoint": "/moved/checkpoints/best-epoch000.ckpt"})
        )
        return folder

    sibling("0", "other")
    sibling("1", "k", checkpoint=False)
    own = sibling("2", "k")
    assert find_reusable_run("k", [tmp_path], own) is None  # itself never counts
    found = sibling("3", "k")
    assert find_reusable_run("k", [tmp_path], own).directory == found


def test_a_multirun_over_models_solvers_and_noise_levels_trains_each_model_once(tmp_path: Path) -> None:
    """``python -m deepm3.train -m model=deepm3,sasrec solver=euler,rk4 noise=jitter noise.level=0.5,1.0``."""
    sweep = tmp_path / "sweep"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "deepm3.train",
        "-m",
        "model=deepm3,sasrec",
        "solver=euler,rk4",
        "noise=jitter",
        "noise.level=0.5,1.0",
        *FAST_TRAINER,
        *SMALL,
        *tiny_dataset(tmp_path / "data"),
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = {}
    for folder in sorted(sweep.iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1):
        if folder.name.isdigit():
            config = OmegaConf.load(folder / ".hydra" / "config.yaml")
            jobs[(config.model.name, config.solver.method, config.noise.level)] = (
                folder,
                json.loads((folder / "metrics.json").read_text()),
            )
    assert len(jobs) == 8
    for (model, solver, level), (folder, metrics) in jobs.items():
        assert metrics["noise"] == {"name": "jitter", "level": level, "seed": 0}  # the same draw for every model
        twin_folder, twin = jobs[(model, solver, 0.5)]
        if level == 0.5:  # the first job of each (model, solver) trains ...
            assert "reused_checkpoint_from" not in metrics and (folder / "checkpoints" / "last.ckpt").is_file()
        else:  # ... the other level only re-tests that checkpoint
            assert metrics["reused_checkpoint_from"] == str(twin_folder)
            assert not (folder / "checkpoints" / "last.ckpt").exists()
            assert metrics["test"] == twin["test"] and metrics["training_key"] == twin["training_key"]
            assert Path(metrics["best_checkpoint"]).name == Path(twin["best_checkpoint"]).name
    keys = {metrics["training_key"] for _, metrics in jobs.values()}
    assert len(keys) == 4  # model x solver


def _headline_before_one_loop(module, samples, batch_size: int) -> dict[str, float]:
    """noise_eval.headline_metrics as it was while it kept its own evaluation loop (issue 29)."""
    import torch

    from deepm3.data.datamodule import BatchCollator
    from deepm3.metrics import metric_names, ranking_metrics, repeat_targets

    module.eval()
    collate = BatchCollator(samples)
    ranks, repeats = [], []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            batch = collate(list(range(start, min(start + batch_size, len(samples)))))
            ranks.append(module.ranks(batch).cpu())
            repeats.append(
                repeat_targets(batch["targets"][:, -1], batch["history_rows"], batch["history_items"]).cpu()
                if "history_rows" in batch
                else torch.zeros(len(batch["items"]), dtype=torch.bool)
            )
    rank, repeat = torch.cat(ranks), torch.cat(repeats)
    if bool(getattr(module.hparams, "exclude_history", False)):
        rank = rank[~repeat]
    if not len(rank):
        return {name: float("nan") for name in metric_names(module.ks)}
    return {name: float(values.float().mean()) for name, values in ranking_metrics(rank, module.ks).items()}


@pytest.mark.parametrize("exclude_history", ["false", "true"])
def test_the_noisy_retest_goes_through_the_modules_evaluation_with_the_same_numbers(
    tmp_path: Path, exclude_history: str
) -> None:
    """One evaluation loop (issue 29): the noisy re-test ranks and averages through RecModule's own
    path, and its numbers equal, bit for bit, those of the separate loop it replaced."""
    import torch
    from hydra.utils import instantiate

    from deepm3.analysis.noise import perturb_samples
    from deepm3.models.module import RecModule
    from deepm3.run.noise_eval import headline_metrics, noise_setting, noisy_test_metrics
    from tests.helpers.tiny_runs import tiny_config

    cfg = tiny_config(
        tmp_path / "run", tmp_path / "data", *SMALL, "noise=item_replace", f"eval.exclude_history={exclude_history}"
    )
    noise = noise_setting(cfg)
    assert noise is not None
    datamodule = instantiate(cfg.dataset, seed=0, _convert_="all")
    datamodule.setup()
    torch.manual_seed(0)
    module = RecModule.from_config(cfg, datamodule.num_items)
    test = datamodule.splits["test"]
    noisy = perturb_samples(test, noise.operator, noise.seed, datamodule.num_items)
    for samples in (test, noisy):
        for batch_size in (1, 7, 64):
            new = headline_metrics(module, samples, batch_size, torch.device("cpu"))
            old = _headline_before_one_loop(module, samples, batch_size)
            assert list(new) == list(old) and new == old
    old = _headline_before_one_loop(module, noisy, int(datamodule.eval_batch_size))
    assert noisy_test_metrics(module, datamodule, noise, torch.device("cpu")) == old
