"""Checkpoints (deepm3.run.checkpoint): what a checkpoint may hold, and what loading one refuses."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from deepm3.errors import DataError
from deepm3.models.module import RecModule
from deepm3.recommender import Recommender
from deepm3.registry import network_class
from deepm3.run.checkpoint import build_net
from deepm3.train import run
from tests.helpers.config import CONF_DIR
from tests.helpers.serve_fixtures import TrainedRun, train_tiny
from tests.helpers.tiny_recommenders import N, deepm3_net
from tests.helpers.tiny_runs import tiny_config
from tests.helpers.user_errors import one_line


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


NET = ("model.net.hidden=16", "model.net.field.width=16")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One tiny DeepM3 run on ``ServeSource`` (20 items), as a user would have on disk."""
    return train_tiny(tmp_path_factory.mktemp("rel2-run"), *NET)


def copy_run(run: TrainedRun, dest: Path) -> Path:
    return Path(shutil.copytree(run.run_dir, dest / "run"))


def best_of(run_dir: Path) -> Path:
    return next((run_dir / "checkpoints").glob("best-*.ckpt"))


@pytest.fixture
def sneaky_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module on sys.path that leaves a marker file when it is imported."""
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_net.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Net:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("sneaky_net", None)


def retarget(checkpoint: Path, dest: Path, target: str) -> Path:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["hyper_parameters"]["net"]["_target_"] = target
    torch.save(saved, dest)
    return dest


def test_serving_a_checkpoint_that_names_any_module_imports_nothing(trained, tmp_path, sneaky_module) -> None:
    run_dir = copy_run(trained, tmp_path)
    for target in ("sneaky_net.Net", "this.Zen"):
        checkpoint = retarget(best_of(run_dir), run_dir / "checkpoints" / "named.ckpt", target)
        with pytest.raises(DataError) as info:
            Recommender.load(checkpoint, device="cpu")
        assert f"{target!r} is not a SequentialRecommender" in one_line(info.value)
    assert not sneaky_module.exists() and "sneaky_net" not in sys.modules and "this" not in sys.modules


def test_resuming_from_a_checkpoint_that_names_any_module_imports_nothing(trained, tmp_path, sneaky_module) -> None:
    checkpoint = retarget(best_of(trained.run_dir), tmp_path / "named.ckpt", "sneaky_net.Net")
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *NET, f"ckpt_path={checkpoint}")
    with pytest.raises(Exception) as info:
        run(cfg, output_dir=tmp_path / "run")
    assert "sneaky_net.Net" in one_line(info.value)
    assert not sneaky_module.exists() and "sneaky_net" not in sys.modules


def test_every_packaged_model_is_a_known_network() -> None:
    import yaml

    from deepm3.registry import known_networks, network_class

    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        target = yaml.safe_load(path.read_text())["net"]["_target_"]
        assert target in known_networks(), path.name
        assert network_class(target).__name__ == target.rsplit(".", 1)[1]
    with pytest.raises(DataError, match="'os.system' is not a SequentialRecommender"):
        network_class("os.system")


def test_checkpoints_record_the_item_map_they_were_trained_on(trained) -> None:
    from deepm3.data.processed import item_map_digest

    for checkpoint in (trained.run_dir / "checkpoints").glob("*.ckpt"):
        stamp = torch.load(checkpoint, map_location="cpu", weights_only=True)["deepm3_data"]
        assert stamp["item_map_sha256"] == item_map_digest(trained.data.item_ids)
        assert stamp["num_items"] == 20 and stamp["dataset"] == "serve"
        assert stamp["cache_key"] == Path(trained.metrics["data"]["data_dir"]).name


def test_serving_refuses_a_checkpoint_of_another_dataset_with_the_same_item_count(trained, tmp_path) -> None:
    run_dir = copy_run(trained, tmp_path)
    other = [f"other-{i:02d}" for i in range(20)]
    pd.DataFrame({"index": range(1, 21), "raw_id": other}).to_csv(run_dir / "item_map.csv", index=False)
    popularity = pd.read_csv(run_dir / "item_popularity.csv")
    popularity.assign(raw_id=other).to_csv(run_dir / "item_popularity.csv", index=False)
    with pytest.raises(DataError) as info:
        Recommender.load(run_dir, device="cpu")
    message = one_line(info.value)
    assert "another dataset" in message and "item_map.csv" in message


def test_resuming_from_a_checkpoint_of_another_dataset_is_refused(trained, tmp_path) -> None:
    # TinySource has 20 items too, under other raw ids: the weights fit, the items do not
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *NET, f"ckpt_path={best_of(trained.run_dir)}")
    with pytest.raises(Exception) as info:
        run(cfg, output_dir=tmp_path / "run")
    message = one_line(info.value)
    assert "another dataset" in message and "ckpt_path=" in message
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not list((tmp_path / "run").glob("checkpoints/*.ckpt"))


def test_resuming_from_a_truncated_checkpoint_is_one_line(trained, tmp_path: Path) -> None:
    data = best_of(trained.run_dir).read_bytes()
    truncated = tmp_path / "cut.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    cfg = tiny_config(tmp_path / "run", tmp_path / "data", *NET, f"ckpt_path={truncated}")
    with pytest.raises(Exception) as info:
        run(cfg, output_dir=tmp_path / "run")
    assert f"ckpt_path={truncated}: not a loadable checkpoint" in one_line(info.value)
    assert truncated.read_bytes() == data[: len(data) // 2]


@pytest.fixture
def lookalike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``sneaky_net.SASRecNet``: a real SequentialRecommender that leaves a marker when imported."""
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_net.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from deepm3.models.components.sasrec import SASRecNet as _Real\n"
        "class SASRecNet(_Real):\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("sneaky_net", None)


@pytest.mark.parametrize("name", ["sneaky_net.SASRecNet", "sneaky_net.DeepM3Net", "sneaky_net.models.SASRecNet"])
def test_a_class_named_like_an_allowed_network_in_another_module_is_refused_unimported(lookalike, name) -> None:
    with pytest.raises(DataError) as info:
        network_class(name)
    assert f"{name!r} is not a SequentialRecommender this package knows" in str(info.value)
    assert not lookalike.exists() and "sneaky_net" not in sys.modules


def test_a_checkpoint_naming_a_lookalike_network_is_refused_unimported(lookalike, tmp_path: Path) -> None:
    torch.manual_seed(0)
    real = deepm3_net()
    checkpoint = tmp_path / "lookalike.ckpt"
    torch.save(
        {
            "hyper_parameters": {"net": {"_target_": "sneaky_net.SASRecNet", "hidden": 8}, "num_items": N},
            "state_dict": {f"net.{key}": value for key, value in real.state_dict().items()},
        },
        checkpoint,
    )
    with pytest.raises(DataError) as info:
        build_net(checkpoint, tmp_path, N)
    assert "'sneaky_net.SASRecNet' is not a SequentialRecommender" in str(info.value)
    assert not lookalike.exists() and "sneaky_net" not in sys.modules
