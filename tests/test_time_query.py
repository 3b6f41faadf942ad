"""``time.query``: every model sees the same time information -- under ``last`` the target's
timestamp changes no score, under ``target`` each time-aware model reads it (``visible_inputs``)."""

from __future__ import annotations

import pytest
import torch

from deepm3.models.components.bert4rec import BERT4RecNet
from deepm3.models.components.deepm3 import DeepM3Net
from deepm3.models.components.gru4rec import GRU4RecNet
from deepm3.models.components.gru_dt import GRUDtNet
from deepm3.models.components.sasrec import SASRecNet
from deepm3.models.components.time import visible_inputs
from deepm3.models.components.tisasrec import TiSASRecNet
from deepm3.models.module import RecModule

N = 12


def _nets() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    field = {"width": 16, "zero_init": False}  # a zero field would hide any use of time
    nets = {
        "deepm3-euler": lambda q: DeepM3Net(
            N, hidden=8, dropout=0.0, field=field, time={"query": q}, solver={"method": "euler", "steps": 2}
        ),
        "deepm3-rk4": lambda q: DeepM3Net(
            N, hidden=8, dropout=0.0, field=field, time={"query": q}, solver={"method": "rk4", "steps": 1}
        ),
        "tisasrec": lambda q: TiSASRecNet(N, hidden=8, heads=2, dropout=0.0, max_len=5, clip=16),
        "gru_dt": lambda q: GRUDtNet(N, hidden=8, gru_hidden=8, dropout=0.0, time={"query": q}),
        "sasrec": lambda q: SASRecNet(N, hidden=8, heads=2, dropout=0.0, max_len=5),
        "gru4rec": lambda q: GRU4RecNet(N, hidden=8, gru_hidden=8, dropout=0.0),
        "bert4rec": lambda q: BERT4RecNet(N, hidden=8, heads=2, dropout=0.0, max_len=5),
    }
    return nets


TIME_AWARE = ["deepm3-euler", "deepm3-rk4", "tisasrec", "gru_dt"]


def _module(name: str, query: str) -> RecModule:
    torch.manual_seed(0)
    module = RecModule({"_target_": "deepm3.models.components.pop.PopNet"}, num_items=N, query=query)
    module.net = _nets()[name](query).eval()  # the network under test, behind the module's input rule
    return module


def _window(target_time: int) -> dict[str, torch.Tensor]:
    items = torch.tensor([[0, 3, 5, 7, 2], [4, 4, 9, 1, 6]])
    times = torch.tensor([[0, 100, 4000, 90000, 90500], [10, 20, 7200, 7300, 400000]])
    next_times = torch.cat([times[:, 1:], torch.full((2, 1), 0)], dim=1)
    next_times[0, 0] = 0
    next_times[:, -1] = times[:, -1] + target_time
    targets = torch.zeros_like(items)
    targets[:, -1] = torch.tensor([8, 10])
    return {"items": items, "times": times, "next_times": next_times, "targets": targets}


@pytest.mark.parametrize("name", list(_nets()))
def test_under_query_last_the_target_timestamp_changes_no_score(name: str) -> None:
    module = _module(name, "last")
    with torch.no_grad():
        soon, late = module(_window(60)), module(_window(3 * 86400))
    torch.testing.assert_close(soon, late, rtol=0, atol=0)


@pytest.mark.parametrize("name", TIME_AWARE)
def test_under_query_target_every_time_aware_model_reads_the_target_timestamp(name: str) -> None:
    module = _module(name, "target")
    with torch.no_grad():
        soon, late = module(_window(60)), module(_window(3 * 86400))
    assert not torch.allclose(soon, late)


@pytest.mark.parametrize("name", ["deepm3-euler", "deepm3-rk4"])
def test_under_query_last_deepm3_still_flows_between_observed_events(name: str) -> None:
    module = _module(name, "last")
    moved = _window(60)
    moved["times"][1, 3] += 20000  # a history event later: the gaps around it change
    moved["next_times"][1, 2] += 20000
    with torch.no_grad():
        assert not torch.allclose(module(_window(60))[1], module(moved)[1])


def test_under_query_last_the_training_loss_ignores_the_targets_timestamps() -> None:
    module = _module("deepm3-euler", "last")
    batch = _window(60)
    batch["targets"] = torch.tensor([[0, 5, 7, 2, 8], [4, 9, 1, 6, 10]])
    later = {**batch, "next_times": batch["next_times"] + 5000 * (batch["items"] > 0)}
    assert module.training_step(batch, 0).item() == module.training_step(later, 0).item()


def test_visible_inputs_hide_the_query_time_only_under_last() -> None:
    batch = _window(60)
    assert visible_inputs(batch, "target")["next_times"] is batch["next_times"]
    assert torch.equal(visible_inputs(batch, "last")["next_times"], batch["times"])


@pytest.mark.parametrize("query", ["target", "last"])
def test_deepm3_event_by_event_state_reproduces_the_window_forward(query: str) -> None:
    """What a stateful server relies on: advance() per event + readout() == forward()."""
    torch.manual_seed(1)
    net = DeepM3Net(
        N,
        hidden=8,
        dropout=0.0,
        field={"width": 16, "zero_init": False},
        time={"query": query},
        solver={"method": "rk4", "steps": 2},
    ).eval()
    window = _window(5000)
    batch = visible_inputs(window, query)
    with torch.no_grad():
        expected = net.predict(batch)
        h = net.initial_state(2)
        previous = torch.zeros(2, dtype=torch.long)
        for i in range(window["items"].shape[1]):
            items, times = window["items"][:, i], window["times"][:, i]
            gap = torch.where(previous > 0, times - previous, torch.zeros_like(times))
            h = net.advance(h, items, gap)
            previous = torch.where(items > 0, times, previous)
        scores = net.readout(h, window["next_times"][:, -1] - window["times"][:, -1])
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)


def test_the_module_is_the_only_road_of_time_query_into_the_network() -> None:
    """The model configs name only time.unit and time.transform; the module hands the mode over."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("deepm3.conf", version_base=None):
        cfg = compose("train", overrides=["model=deepm3", "time.query=last", "time.unit=seconds"])
    assert "query" not in cfg.model.net.time
    module = RecModule.from_config(cfg, num_items=N)
    assert module.net.time.query == "last" and module.net.time.unit_seconds == 1.0
    assert "query" not in module.hparams.net["time"]  # one record of the mode: the module's own


def test_a_network_config_that_still_names_a_query_gets_the_modules() -> None:
    old = {"_target_": "deepm3.models.components.gru_dt.GRUDtNet", "hidden": 8, "gru_hidden": 8}
    module = RecModule({**old, "time": {"unit": "hours", "query": "target"}}, num_items=N, query="last")
    assert module.net.time.query == "last"
