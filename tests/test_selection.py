"""Choosing among DeepM3 variants on validation only: the selection stage."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import open_dict

from deepm3.errors import ConfigError
from deepm3.phase2.pipeline import run_phase2
from deepm3.phase2.selection import choose, validation_table
from tests.helpers.tiny_study import phase2_config

MODELS = {
    "deepm3-euler": ["model=deepm3", "model.net.hidden=16", "model.net.field.width=16"],
    "deepm3-decay": ["model=deepm3", "model.net.hidden=16", "model.net.field.width=16", "model.net.field.kind=decay"],
    "deepm3-none": ["model=deepm3", "solver=none", "model.net.hidden=16"],
    "gru4rec": ["model=gru4rec", "model.net.hidden=16", "model.net.gru_hidden=16"],
    "pop": ["model=pop"],
}


def _run(model: str, seed: int, val: float, test: float) -> dict:
    return {"model": model, "seed": seed, "best_val": {"val/ndcg@10": val}, "test": {"ndcg@10": test}}


def test_the_winner_is_the_best_mean_validation_score_whatever_the_test_says() -> None:
    runs = [
        _run("a", 0, 0.30, 0.01),
        _run("a", 1, 0.32, 0.01),
        _run("b", 0, 0.31, 0.90),
        _run("b", 1, 0.29, 0.90),
        _run("none", 0, 0.5, 0.5),
        _run("base1", 0, 0.2, 0.9),
        _run("base2", 0, 0.25, 0.1),
    ]
    table = validation_table(runs, ["a", "b"], "val/ndcg@10")
    assert table.set_index("model").loc["a", "val/ndcg@10_mean"] == pytest.approx(0.31)
    assert choose(table, ["a", "b"], "none", "val/ndcg@10") == {
        "winner": "a",
        "best_baseline": "base2",
        "ablation": "none",
    }


def test_the_selection_stage_writes_validation_then_test_for_the_chosen_only(tmp_path: Path) -> None:
    cfg = phase2_config(
        tmp_path / "results", tmp_path / "data", "studies=[train,selection,report]", "seeds=[0,1]", models=MODELS
    )
    cfg.query_modes = ["last"]
    with open_dict(cfg.preset):
        cfg.preset.selection = {"candidates": ["deepm3-euler", "deepm3-decay"], "ablation": "deepm3-none"}
    run_phase2(cfg)
    out = tmp_path / "results" / "tiny"
    selection = pd.read_csv(out / "selection.csv")
    assert set(selection["model"]) == set(MODELS) and selection["selected"].sum() == 1
    chosen = json.loads((out / "selected.json").read_text())
    assert chosen["winner"] in {"deepm3-euler", "deepm3-decay"} and chosen["ablation"] == "deepm3-none"
    assert chosen["best_baseline"] in {"gru4rec", "pop"}
    assert "time.query=last" in chosen["overrides"]
    test = pd.read_csv(out / "selection_test.csv")
    assert set(test["model"]) == {chosen["winner"], "deepm3-none", chosen["best_baseline"]}
    significance = pd.read_csv(out / "selection_significance.csv")
    assert significance["baseline"].tolist() == ["deepm3-none", chosen["best_baseline"]]
    assert "## Selection on validation" in (out / "README.md").read_text()


def test_no_selection_in_the_preset_writes_nothing(tmp_path: Path) -> None:
    from deepm3.phase2.plan import make_plan
    from deepm3.phase2.selection import write_selection

    assert write_selection(make_plan("d", {"a": []}, [0], tmp_path), tmp_path, None) == []


def test_an_empty_candidate_list_is_a_config_error(tmp_path: Path) -> None:
    from deepm3.phase2.plan import make_plan
    from deepm3.phase2.selection import write_selection

    with pytest.raises(ConfigError, match="selection.candidates is empty"):
        write_selection(make_plan("d", {"a": []}, [0], tmp_path), tmp_path, {"candidates": []})


def test_the_dynamics_preset_gives_every_candidate_and_baseline_the_same_budget() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from deepm3.phase2.plan import plan_from_config
    from tests.helpers.config import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        cfg = compose(config_name="phase2", overrides=["preset=dynamics"])
    GlobalHydra.instance().clear()
    preset = cfg.preset
    assert set(preset.selection.candidates) <= set(preset.models)
    assert set(preset.tune) == set(preset.models)
    assert len({str(grid) for grid in preset.tune.values()}) == 1
    plan = plan_from_config(cfg)
    assert all("time.query=last" in spec.overrides for spec in plan.runs)
    assert len(plan.runs) == 3 * len(preset.models)
