"""End to end: the real Hydra config, tiny runs of DeepM3 for each solver, reload and resume.

Each solver is trained once per module (1 epoch, 2 batches, on ``TinySource``); the tests
then read what the run left on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import deepm3.models.components.base as base
from deepm3.data.processed import ProcessedData
from deepm3.data.samples import training_gap_cv
from deepm3.data.sources.ml100k import recbole_copy
from deepm3.errors import ConfigError, DeepM3Error, user_error
from deepm3.metrics import metric_names, ranking_metrics
from deepm3.models.module import RecModule
from deepm3.run.callbacks import NonFiniteLossError
from deepm3.train import run
from tests.helpers.accelerator import trainer_override
from tests.helpers.tiny_runs import FAST_TRAINER, compose_train, tiny_config, tiny_dataset
from tests.helpers.user_errors import one_line

REPO_ROOT = Path(__file__).resolve().parents[1]
NET = ("model.net.hidden=16", "model.net.field.width=16")
SOLVERS = ["euler", "rk4", "none"]
USER_COLUMNS = ["user", "history_length", "gap_cv", "rank", "repeat", *metric_names()]

TINY_RUN = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=2",
    "++trainer.limit_val_batches=2",
    trainer_override(),
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "model.net.hidden=16",
    "model.net.field.width=16",
    "dataset.max_len=10",
]


def tiny_data(data_dir: Path) -> list[str]:
    """Select the synthetic ``TinySource`` instead of ML-100k (batches of 16: 2 batches < 1 epoch)."""
    return [
        "dataset.source._target_=tests.helpers.spine_fixtures.TinySource",
        "~dataset.source.download",
        "~dataset.source.use_recbole",
        f"dataset.source.raw_dir={data_dir / 'raw' / 'tiny'}",
        "dataset.name=tiny",
        "dataset.batch_size=16",
        f"paths.data_dir={data_dir}",
    ]


def tiny_cfg(out: Path, data_dir: Path, *overrides: str):
    return compose_train([*TINY_RUN, *tiny_data(data_dir), f"paths.output_dir={out}", *overrides])


def train(out: Path, data_dir: Path, *overrides: str) -> dict:
    return run(tiny_cfg(out, data_dir, *overrides), output_dir=out)


class Run:
    """A finished run: its config, folder and returned metrics."""

    def __init__(self, solver: str, root: Path, *overrides: str) -> None:
        self.data_dir = root / "data"
        self.out = root / f"run-{solver}"
        self.overrides = [f"solver={solver}", *overrides]
        self.cfg = tiny_cfg(self.out, self.data_dir, *self.overrides)
        self.metrics = run(self.cfg, output_dir=self.out)
        self.data = ProcessedData.load(Path(self.metrics["data"]["data_dir"]))
        self.users = pd.read_csv(
            self.out / "test_users.csv",
            dtype={"user": str},
            keep_default_na=False,
            na_values={"gap_cv": ["", "NaN", "nan"]},
        )

    def best_checkpoint(self) -> Path:
        return Path(self.metrics["best_checkpoint"])


@pytest.fixture(scope="module", params=SOLVERS)
def tiny_run(request, tmp_path_factory) -> Run:
    return Run(request.param, tmp_path_factory.mktemp(f"e2e-{request.param}"))


@pytest.fixture(scope="module")
def euler_run(tmp_path_factory) -> Run:
    return Run("euler", tmp_path_factory.mktemp("e2e-resume"))


@pytest.fixture(scope="module")
def history_excluded_run(tmp_path_factory) -> Run:
    return Run("euler", tmp_path_factory.mktemp("e2e-exclude"), "eval.exclude_history=true")


def test_metrics_json_holds_every_test_metric(tiny_run):
    written = json.loads((tiny_run.out / "metrics.json").read_text())
    assert sorted(written["test"]) == sorted(metric_names())
    assert all(0.0 <= v <= 1.0 for v in written["test"].values())
    assert written["test"] == pytest.approx(tiny_run.metrics["test"])
    assert written["solver"]["method"] == tiny_run.cfg.solver.method
    assert written["epochs"] == 1


def test_user_rows_are_one_per_user_with_rank_and_metrics(tiny_run):
    rows = tiny_run.users
    assert rows.columns.tolist() == USER_COLUMNS
    assert sorted(rows["user"]) == sorted(tiny_run.data.user_ids.tolist())
    ranks = torch.tensor(rows["rank"].to_numpy())
    assert ranks.min() >= 0 and ranks.max() < tiny_run.data.num_items
    for name, values in ranking_metrics(ranks).items():
        np.testing.assert_allclose(rows[name].to_numpy(), values.numpy(), rtol=1e-6, err_msg=name)
        assert rows[name].mean() == pytest.approx(tiny_run.metrics["test"][name], abs=1e-6)


def test_user_metrics_are_the_textbook_formulas_of_each_rank(tiny_run):
    """HR@K = [rank < K], NDCG@K = [rank < K] / log2(rank + 2), MRR@K = [rank < K] / (rank + 1) for a
    0-based rank, written out here rather than recomputed with ``ranking_metrics``."""
    rows, written = tiny_run.users, tiny_run.metrics["test"]
    for k in (5, 10, 20):
        hit = [1.0 if rank < k else 0.0 for rank in rows["rank"]]
        expected = {
            f"hr@{k}": hit,
            f"ndcg@{k}": [h / np.log2(rank + 2) for h, rank in zip(hit, rows["rank"])],
            f"mrr@{k}": [h / (rank + 1) for h, rank in zip(hit, rows["rank"])],
        }
        for name, values in expected.items():
            np.testing.assert_allclose(rows[name], values, rtol=1e-6, err_msg=name)
            assert written[name] == pytest.approx(sum(values) / len(values), abs=1e-6), name


def test_user_rows_carry_history_length_and_training_gap_cv(tiny_run):
    data = tiny_run.data
    index = {u: i for i, u in enumerate(data.user_ids.tolist())}
    order = [index[u] for u in tiny_run.users["user"]]
    np.testing.assert_array_equal(tiny_run.users["history_length"], data.lengths()[order] - 1)
    np.testing.assert_allclose(tiny_run.users["gap_cv"], training_gap_cv(data)[order], equal_nan=True)


def test_item_map_serves_back_raw_ids(tiny_run):
    item_map = pd.read_csv(tiny_run.out / "item_map.csv", dtype={"raw_id": str})
    assert item_map["index"].tolist() == list(range(1, tiny_run.data.num_items + 1))
    assert item_map["raw_id"].tolist() == tiny_run.data.item_ids.tolist()


def test_checkpoints_and_logs_are_written(tiny_run):
    checkpoints = tiny_run.out / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert tiny_run.best_checkpoint() == checkpoints / "best-epoch000.ckpt"
    assert tiny_run.best_checkpoint().is_file()
    log = pd.read_csv(tiny_run.out / "logs" / "metrics.csv")
    assert "val/ndcg@10" in log.columns and log["val/ndcg@10"].notna().any()


def test_best_checkpoint_reloads_and_reproduces_the_test_ranks(tiny_run):
    module = RecModule.load_from_checkpoint(tiny_run.best_checkpoint(), weights_only=True).eval()
    datamodule = instantiate(tiny_run.cfg.dataset, seed=tiny_run.cfg.seed, _convert_="all")
    ranks = {}
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            for user, rank in zip(batch["users"].tolist(), module.ranks(batch).tolist()):
                ranks[str(tiny_run.data.user_ids[user])] = rank
    assert ranks == dict(zip(tiny_run.users["user"], tiny_run.users["rank"].tolist()))


def brute_force_ranks(run: Run, exclude_history: bool) -> dict[str, int]:
    """Each user's test rank counted item by item, from the raw sequences: the number of other
    candidate items scoring at least the target. Candidates are every item, minus the user's
    earlier events when ``exclude_history`` and the target is not one of them (a repeat target is
    ranked over every item). Windows are built here, not by the data module."""
    module = RecModule.load_from_checkpoint(run.best_checkpoint(), map_location="cpu", weights_only=True).eval()
    data, width = run.data, int(run.cfg.dataset.max_len)
    sequences = [(data.items[a:b].tolist(), data.times[a:b].tolist()) for a, b in zip(data.offsets, data.offsets[1:])]
    windows: dict[str, list[list[int]]] = {"items": [], "times": [], "next_times": []}
    for items, times in sequences:
        seen, when = items[:-1][-width:], times[:-1][-width:]
        pad = [0] * (width - len(seen))
        windows["items"].append(pad + seen)
        windows["times"].append(pad + when)
        windows["next_times"].append(pad + when[1:] + [times[-1]])  # the last one asks at the target's time
    with torch.no_grad():
        scores = module({k: torch.tensor(v) for k, v in windows.items()}).tolist()
    ranks = {}
    for user, (items, _), row in zip(data.user_ids, sequences, scores):
        history, target = set(items[:-1]), items[-1]
        excluded = history if exclude_history and target not in history else set()
        ranks[str(user)] = sum(
            1
            for item in range(1, data.num_items + 1)
            if item != target and item not in excluded and row[item] >= row[target]
        )
    return ranks


@pytest.fixture(scope="module")
def repeat_run(tmp_path_factory) -> Run:
    """History excluded on data where users consume items again (targets can repeat)."""
    return Run(
        "euler", tmp_path_factory.mktemp("e2e-repeats"), "eval.exclude_history=true", "+dataset.source.repeats=true"
    )


def test_repeat_targets_are_flagged_per_user(repeat_run):
    data = repeat_run.data
    expected = {
        str(u): int(data.items[b - 1] in set(data.items[a : b - 1].tolist()))
        for u, a, b in zip(data.user_ids, data.offsets, data.offsets[1:])
    }
    assert 0 < sum(expected.values()) < len(expected)  # the fixture really has both kinds
    assert dict(zip(repeat_run.users["user"], repeat_run.users["repeat"].tolist())) == expected


def test_repeat_targets_are_ranked_over_every_item_even_with_the_history_excluded(repeat_run):
    written = dict(zip(repeat_run.users["user"], repeat_run.users["rank"].tolist()))
    assert written == brute_force_ranks(repeat_run, exclude_history=True)


def test_the_headline_covers_novel_targets_and_repeats_are_their_own_slice(repeat_run):
    rows, test = repeat_run.users, repeat_run.metrics["test"]
    novel, repeat = rows[rows["repeat"] == 0], rows[rows["repeat"] == 1]
    assert test["ndcg@10"] == pytest.approx(novel["ndcg@10"].mean(), abs=1e-6)
    assert test["repeat/ndcg@10"] == pytest.approx(repeat["ndcg@10"].mean(), abs=1e-6)
    assert test["repeat_share"] == pytest.approx(len(repeat) / len(rows))


def test_test_ranks_equal_a_brute_force_count_with_the_history_excluded(history_excluded_run):
    """The ranks in test_users.csv, checked without the data module's batches or ``module.ranks``."""
    written = dict(zip(history_excluded_run.users["user"], history_excluded_run.users["rank"].tolist()))
    assert written == brute_force_ranks(history_excluded_run, exclude_history=True)
    assert written != brute_force_ranks(history_excluded_run, exclude_history=False)  # the exclusion mattered


def test_resuming_from_last_checkpoint_continues_at_the_next_epoch(euler_run, tmp_path):
    out = tmp_path / "resumed"
    last = euler_run.out / "checkpoints" / "last.ckpt"
    metrics = train(out, euler_run.data_dir, *euler_run.overrides, f"ckpt_path={last}", "trainer.max_epochs=2")
    log = pd.read_csv(out / "logs" / "metrics.csv")
    fit_rows = log[log.filter(regex="^(train|val)/").notna().any(axis=1)]
    assert set(fit_rows["epoch"].astype(int)) == {1}, "epoch 0 must not be trained again"
    resumed = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1
    assert resumed["global_step"] == 4  # 2 batches before + 2 after
    assert metrics["epochs"] == 2


def test_ckpt_path_last_resumes_inside_the_same_run_folder(euler_run, tmp_path):
    out = tmp_path / "run"
    train(out, euler_run.data_dir, *euler_run.overrides)
    train(out, euler_run.data_dir, *euler_run.overrides, "ckpt_path=last", "trainer.max_epochs=2")
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert [n for n in names if n.startswith("last")] == ["last.ckpt"], names  # no last-v1.ckpt beside it
    assert len([n for n in names if n.startswith("best-")]) == 1, names  # save_top_k=1 survives the resume
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_missing_checkpoint_path_is_a_clear_error(euler_run, tmp_path):
    with pytest.raises(DeepM3Error, match="no such checkpoint"):
        train(tmp_path / "x", euler_run.data_dir, f"ckpt_path={tmp_path / 'nope.ckpt'}")


def test_multirun_from_another_folder_writes_one_complete_job_per_setting(tmp_path):
    sweep, elsewhere = tmp_path / "sweep", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "deepm3.train",
        "-m",
        "solver=euler,none",
        *TINY_RUN,
        *tiny_data(tmp_path / "data"),
        f"hydra.sweep.dir={sweep}",
    ]
    done = subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    for job, method in (("0", "euler"), ("1", "none")):
        folder = sweep / job
        assert not (folder / "error.json").exists(), (folder / "error.json").read_text()
        config = OmegaConf.load(folder / ".hydra" / "config.yaml")
        assert config.solver.method == method
        for name in ("metrics.json", "test_users.csv", "item_map.csv", "checkpoints/last.ckpt"):
            assert (folder / name).is_file(), f"{job}: {name} missing"
        assert list((folder / "checkpoints").glob("best-epoch*.ckpt"))
    assert not list(elsewhere.iterdir()), "nothing may be written to the working directory"


@pytest.mark.skipif(
    recbole_copy() is None, reason="needs the offline ML-100k copy: pip install --no-deps recbole==1.2.1"
)
def test_ml100k_trains_and_tests_offline_end_to_end(tmp_path):
    cfg = compose_train(
        [
            *TINY_RUN,
            f"paths.output_dir={tmp_path}",
            f"paths.data_dir={tmp_path / 'data'}",
            "dataset.source.download=false",
        ]
    )
    metrics = run(cfg, output_dir=tmp_path)
    assert metrics["data"]["users"] == 943
    assert len(pd.read_csv(tmp_path / "test_users.csv")) == 943
    assert sorted(metrics["test"]) == sorted(metric_names())


def _cli(args: list[str], cwd: Path, timeout: int = 300, **popen: object) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "deepm3.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


def _tiny_cli_overrides(data_dir: Path, epochs: int) -> list[str]:
    fast = [o for o in FAST_TRAINER if not o.startswith(("trainer.max_epochs", "++trainer.limit_train_batches"))]
    return [
        *fast,
        f"trainer.max_epochs={epochs}",
        "model.net.hidden=16",
        "model.net.field.width=16",
        "callbacks.early_stopping.patience=100",
        *tiny_dataset(data_dir, items=20, max_len=8),
    ]


def test_paths_output_dir_on_the_command_line_holds_every_file_of_the_run(tmp_path: Path) -> None:
    out = tmp_path / "my-run"
    proc = _cli(
        [*_tiny_cli_overrides(tmp_path / "data", 1), f"paths.output_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("metrics.json", "test_users.csv", "logs/metrics.csv", "checkpoints/last.ckpt", ".hydra/config.yaml"):
        assert (out / name).is_file(), name


@pytest.mark.slow
def test_a_killed_run_resumed_with_the_same_command_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    data = tmp_path / "data"
    epochs = 6

    def command(run_dir: Path) -> list[str]:
        return [*_tiny_cli_overrides(data, epochs), f"hydra.run.dir={run_dir}", "ckpt_path=last"]

    reference = _cli(command(tmp_path / "reference"), cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-2000:]

    killed_dir = tmp_path / "killed"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepm3.train", *command(killed_dir)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), "the run never wrote its first checkpoint"
    assert not (killed_dir / "metrics.json").exists(), "killed too late: the run had already finished"

    resumed = _cli(command(killed_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in (killed_dir / "train.log").read_text()
    a = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    b = json.loads((killed_dir / "metrics.json").read_text())
    assert b["test"] == a["test"]
    assert Path(b["best_checkpoint"]).name == Path(a["best_checkpoint"]).name
    assert b["best_val"] == a["best_val"]


def test_the_same_command_and_seed_give_identical_metrics_on_cpu(tmp_path: Path) -> None:
    results = []
    for name in ("first", "second"):
        cfg = tiny_config(
            tmp_path / name,
            tmp_path / "data",
            "trainer.max_epochs=2",
            "trainer.deterministic=true",
            "model.net.hidden=16",
            "model.net.field.width=16",
        )
        results.append(run(cfg, output_dir=tmp_path / name)["test"])
    assert results[0] == results[1]


def test_another_seed_gives_other_weights(tmp_path: Path) -> None:
    states = []
    for seed in (1, 2):
        cfg = tiny_config(
            tmp_path / str(seed), tmp_path / "data", f"seed={seed}", "model.net.hidden=16", "model.net.field.width=16"
        )
        metrics = run(cfg, output_dir=tmp_path / str(seed))
        states.append(torch.load(metrics["best_checkpoint"], weights_only=True)["state_dict"])
    assert not torch.equal(states[0]["net.item_embedding.weight"], states[1]["net.item_embedding.weight"])


def test_a_non_finite_loss_stops_training_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = base.SequentialRecommender.training_loss

    def poisoned(self, batch, loss="ce"):  # healthy for the first epoch (2 batches), then NaN
        calls["n"] += 1
        value = original(self, batch, loss)
        return value * float("nan") if calls["n"] > 2 else value

    monkeypatch.setattr(base.SequentialRecommender, "training_loss", poisoned)
    cfg = tiny_config(
        tmp_path / "run", tmp_path / "data", "trainer.max_epochs=3", "model.net.hidden=16", "model.net.field.width=16"
    )
    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss .* at epoch 1, step 2;.*last\.ckpt"):
        run(cfg, output_dir=tmp_path / "run")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    module = RecModule.load_from_checkpoint(last, weights_only=True)
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize(
    ("overrides", "error", "expected"),
    [
        (["eval.mode=sampled", "eval.negatives=100"], ConfigError, "eval.negatives"),  # 20 items only
        (["optim.loss=hinge"], ConfigError, "optim.loss='hinge'; expected 'ce' or 'bpr'"),
        (["solver.method=heun"], ConfigError, "solver.method='heun' is unknown"),
        (["dataset.train_windows=every"], ConfigError, "dataset.train_windows='every'"),
        (["dataset.train_windows=sliding", "dataset.train_stride=0"], ConfigError, "dataset.train_stride=0"),
    ],
)
def test_an_inconsistent_config_fails_before_training(
    tmp_path: Path, overrides: list[str], error: type, expected: str
) -> None:
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *overrides)
    with pytest.raises(Exception) as caught:
        run(cfg, output_dir=tmp_path / "run")
    assert isinstance(user_error(caught.value), error)
    assert expected in str(user_error(caught.value))
    assert not (tmp_path / "run" / "checkpoints").exists(), "no training may start"


def test_the_cli_reports_a_wrong_type_in_one_line_without_traceback(tmp_path: Path) -> None:
    done = _cli(
        [*_tiny_cli_overrides(tmp_path / "data", 1), f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_epochs=abc"],
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "error: trainer.max_epochs='abc'; expected a positive integer" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_cli_lists_the_allowed_options_of_an_unknown_group_value(tmp_path: Path) -> None:
    done = _cli(["model=nope"], cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "model=nope is not a 'model' config; expected one of" in lines[0]
    for name in ("deepm3", "sasrec", "gru4rec"):
        assert name in lines[0]


def test_a_failing_job_in_a_multirun_is_recorded_and_the_others_finish(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    done = _cli(
        [
            "-m",
            *_tiny_cli_overrides(tmp_path / "data", 1),
            "++trainer.limit_train_batches=2",
            "optim.loss=ce,hinge",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (sweep / "0" / "metrics.json").is_file()
    assert not (sweep / "1" / "metrics.json").exists()
    error = json.loads((sweep / "1" / "error.json").read_text())
    assert "optim.loss=hinge" in error["overrides"]
    assert "optim.loss='hinge'" in error["error"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.lr=-1", "optim.lr=-1; expected a positive number"),
        ("optim.lr=abc", "optim.lr='abc'; expected a positive number"),
        ("optim.weight_decay=-0.1", "optim.weight_decay=-0.1; expected a non-negative number"),
        ("dataset.user_core=abc", "dataset.user_core='abc'; expected a non-negative integer"),
        ("dataset.item_core=-2", "dataset.item_core=-2; expected a non-negative integer"),
        ("model.net.hidden=0", "model.net.hidden=0; expected a positive integer"),
        ("model.net.dropout=2", "model.net.dropout=2; expected a probability in [0, 1)"),
        ("model.net.field.width=abc", "model.net.field.width='abc'; expected a positive integer"),
        ("seed=abc", "seed='abc'; expected an integer"),
    ],
    ids=lambda value: str(value).split("=")[0] if "=" in str(value) else None,
)
def test_bad_values_fail_before_any_work(tmp_path: Path, override: str, expected: str) -> None:
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *NET, override)
    with pytest.raises(ConfigError) as info:
        run(cfg, output_dir=tmp_path / "run")
    assert expected in one_line(info.value)
    assert not (tmp_path / "data").exists(), "no data may be read or cached"
