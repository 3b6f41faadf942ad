"""Trustworthy runs (issue 8): resume after a kill, reruns, NaN guards, bad configs,
atomic outputs, sweep failure isolation, safe loading."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import MissingConfigException

import deepm3.models.components.base as base
from deepm3.callbacks import NonFiniteLossError
from deepm3.data.cache import load_or_build
from deepm3.data.preprocess import PreprocessConfig
from deepm3.errors import ConfigError, user_error
from deepm3.io import write_atomic
from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.module import RecModule
from deepm3.train import run
from tests.helpers.spine_fixtures import TinySource
from tests.helpers.tiny_runs import FAST_TRAINER, tiny_config, tiny_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src" / "deepm3"


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


# -- resume and determinism --------------------------------------------------------------


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


# -- numerics -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_single_event_histories_and_extreme_gaps_keep_the_state_finite(method: str) -> None:
    net = DeepM3Net(10, hidden=8, solver={"method": method, "steps": 1}, field={"zero_init": False}).eval()
    items = torch.zeros(3, 5, dtype=torch.long)
    items[:, -1] = 3  # one real event each
    times = torch.zeros(3, 5, dtype=torch.long)
    times[:, -1] = 1_000_000_000
    next_times = times.clone()
    next_times[:, -1] += torch.tensor([0, 10 * 365 * 86_400, 200 * 365 * 86_400])  # tie, 10 and 200 years
    with torch.no_grad():
        out = net(items, times, next_times)
    assert torch.isfinite(out).all()


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


# -- bad configs fail before any work, in one line -------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=nope", "Could not find 'model/nope'"),
        ("solver=heun", "Could not find 'solver/heun'"),
        ("dataset=movielens", "Could not find 'dataset/movielens'"),
    ],
)
def test_an_unknown_option_is_refused_at_composition(tmp_path: Path, override: str, expected: str) -> None:
    with pytest.raises(MissingConfigException, match=re.escape(expected)):
        tiny_config(tmp_path / "run", tmp_path / "data", override)


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


# -- outputs ---------------------------------------------------------------------------------


def test_an_interrupted_write_leaves_neither_the_file_nor_a_temporary(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"

    def crash(tmp: Path) -> None:
        tmp.write_text('{"half": ')
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomic(target, crash)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_keeps_the_previous_complete_file(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text('{"complete": true}')
    with pytest.raises(RuntimeError):
        write_atomic(target, lambda tmp: (tmp.write_text("{"), (_ for _ in ()).throw(RuntimeError())))
    assert json.loads(target.read_text()) == {"complete": True}


def test_concurrent_builds_of_one_cache_end_with_one_valid_folder(tmp_path: Path) -> None:
    source = TinySource(tmp_path / "raw")
    source.files()
    results, errors = [], []

    def build() -> None:
        try:
            results.append(load_or_build(source, PreprocessConfig(), tmp_path / "cache"))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    folders = {folder for _, folder in results}
    assert len(folders) == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [next(iter(folders)).name]
    for data, _ in results:
        np.testing.assert_array_equal(data.items, results[0][0].items)


# -- sweeps ----------------------------------------------------------------------------------


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


# -- security --------------------------------------------------------------------------------


def test_checkpoints_holding_arbitrary_objects_are_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (os.system, ("true",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": Payload()}}, path)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch.load(path, weights_only=True)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        RecModule.load_from_checkpoint(path, weights_only=True)


def test_no_source_file_evaluates_or_unpickles_data() -> None:
    pattern = re.compile(r"(?<![\w.])(eval|exec)\(|pickle\.loads?\(|allow_pickle=True|weights_only=False")
    offenders = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
