"""A command-line choice of a config group that names no file, or a setting the entry point does not
have, is one line, before Hydra composes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import MissingConfigException

from deepm3.cli_args import check_group_choices, check_setting_names
from deepm3.errors import ConfigError
from tests.helpers.tiny_runs import tiny_config


def test_an_unknown_choice_names_the_group_and_its_options():
    with pytest.raises(
        ConfigError, match=r"solver=warp is not a 'solver' config; expected one of \['euler', 'none', 'rk4'\]"
    ):
        check_group_choices(["solver=warp"])


def test_each_choice_of_a_sweep_is_checked():
    with pytest.raises(ConfigError, match="model=sasrek"):
        check_group_choices(["-m", "model=sasrec,sasrek"])


@pytest.mark.parametrize(
    "argv",
    [
        ["solver=rk4", "+experiment=peer_ml100k", "dataset=wikipedia"],
        ["optim.lr=0.01", "model.net.hidden=8"],  # keys, not groups
        ["solver=glob(*)"],  # a sweep function: Hydra's to expand
        ["hydra/launcher=joblib"],  # Hydra's own groups are not ours to check
    ],
)
def test_known_choices_and_other_overrides_pass(argv):
    check_group_choices(argv)


def test_the_entry_point_prints_one_line_and_exits_1():
    done = subprocess.run([sys.executable, "-m", "deepm3.train", "solver=warp"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: solver=warp is not a 'solver' config; expected one of ['euler', 'none', 'rk4']"
    ]


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


def test_a_setting_the_entry_point_lacks_is_named_with_the_way_to_add_it():
    expected = r"device=cpu: train has no setting 'device'; .*'trainer'.* \(\+device=cpu adds"
    with pytest.raises(ConfigError, match=expected):
        check_setting_names(["device=cpu"], "train")


@pytest.mark.parametrize(
    "argv",
    [
        ["seed=1", "trainer.accelerator=cpu", "model.net.hidden=8", "time.query=last", "logger=[csv,tensorboard]"],
        ["hydra/launcher=joblib", "hydra.run.dir=x", "+launcher=joblib", "+anything=1", "~eval.ks", "-m"],
        ["experiment=peer_ml100k", "extra_setting_of_an_experiment=1"],  # an experiment may add settings
    ],
)
def test_settings_the_config_has_or_is_told_to_add_pass(argv):
    check_setting_names(argv, "train")


def test_each_entry_point_checks_against_its_own_config():
    check_setting_names(["device=cpu", "k=5"], "recommend")
    with pytest.raises(ConfigError, match="recommend has no setting 'seed'"):
        check_setting_names(["seed=1"], "recommend")


def test_the_train_entry_point_prints_the_unknown_setting_in_one_line_and_exits_1():
    done = subprocess.run([sys.executable, "-m", "deepm3.train", "device=cpu"], capture_output=True, text=True)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "train has no setting 'device'" in done.stderr


def test_the_server_checks_its_settings_too():
    done = subprocess.run([sys.executable, "-m", "deepm3.serve", "devic=cpu"], capture_output=True, text=True)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "serve has no setting 'devic'" in done.stderr
