"""The efficiency study benchmarks DeepM3 with the flow its runs trained, not the bench's pin."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from deepm3.phase2.efficiency import trained_field, with_field
from deepm3.phase2.plan import Plan, RunSpec
from deepm3.run_dir import CONFIG_FILE, write_metrics


def finished_run(root: Path, name: str, config: dict | None) -> RunSpec:
    directory = root / name
    directory.mkdir(parents=True)
    if config is not None:
        (directory / CONFIG_FILE).parent.mkdir()
        OmegaConf.save(OmegaConf.create(config), directory / CONFIG_FILE)
    write_metrics(directory, {"test": {}})
    return RunSpec(name, 0, (), directory)


def deepm3_config(kind: str) -> dict:
    return {"model": {"net": {"field": {"kind": kind}}}}


def test_trained_field_is_the_one_flow_of_the_deepm3_runs(tmp_path: Path) -> None:
    runs = (
        finished_run(tmp_path, "deepm3-euler", deepm3_config("decay")),
        finished_run(tmp_path, "deepm3-rk4", deepm3_config("decay")),
        finished_run(tmp_path, "sasrec", {"model": {"net": {"hidden": 64}}}),
    )
    assert trained_field(Plan("ml100k", tmp_path, runs)) == "decay"


def test_several_trained_flows_leave_the_bench_rows_alone(tmp_path: Path) -> None:
    runs = (
        finished_run(tmp_path, "deepm3-mlp", deepm3_config("mlp")),
        finished_run(tmp_path, "deepm3-decay", deepm3_config("decay")),
    )
    assert trained_field(Plan("ml100k", tmp_path, runs)) is None


def test_runs_without_a_saved_config_are_ignored(tmp_path: Path) -> None:
    runs = (finished_run(tmp_path, "pop", None), finished_run(tmp_path, "deepm3-euler", deepm3_config("decay")))
    assert trained_field(Plan("ml100k", tmp_path, runs)) == "decay"


def test_with_field_replaces_the_pin_on_deepm3_rows_only() -> None:
    rows = {
        "deepm3-euler": ["model=deepm3", "solver=euler", "model.net.field.kind=mlp", "model.net.hidden={hidden}"],
        "deepm3-none": ["model=deepm3", "solver=none"],
        "sasrec": ["model=sasrec", "model.net.hidden={hidden}"],
    }
    assert with_field(rows, "decay") == {
        "deepm3-euler": ["model=deepm3", "solver=euler", "model.net.hidden={hidden}", "model.net.field.kind=decay"],
        "deepm3-none": ["model=deepm3", "solver=none", "model.net.field.kind=decay"],
        "sasrec": ["model=sasrec", "model.net.hidden={hidden}"],
    }
