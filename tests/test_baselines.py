"""Baselines (issue 4): one interface, no peeking at the future, padding-blind, trainable end to end.

Networks are built small and run in eval mode (no dropout) on a random left-padded batch
whose rows have different lengths and uneven, partly tied timestamps.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from deepm3.metrics import metric_names
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.bert4rec import BERT4RecNet, cloze_sequence
from deepm3.models.components.decayed_repeat import DecayedRepeatNet
from deepm3.models.components.gru4rec import GRU4RecNet
from deepm3.models.components.gru_dt import GRUDtNet
from deepm3.models.components.pop import PopNet
from deepm3.models.components.sasrec import SASRecNet
from deepm3.models.components.slrc import SLRCNet
from deepm3.models.components.tisasrec import TiSASRecNet, personal_intervals
from deepm3.run_dir import resolve_run_path
from tests.helpers.tiny_runs import compose_train, tiny_run

N = 30  # items
L = 7  # window width
WIDE = 11  # a wider window for the padding tests

NETS: dict[str, Callable[[], SequentialRecommender]] = {
    "sasrec": lambda: SASRecNet(N, hidden=16, heads=2, max_len=WIDE),
    "sasrec_post_ln": lambda: SASRecNet(N, hidden=16, heads=2, max_len=WIDE, norm_first=False),
    "tisasrec": lambda: TiSASRecNet(N, hidden=16, heads=2, max_len=WIDE, clip=5),
    "gru4rec": lambda: GRU4RecNet(N, hidden=16, gru_hidden=12),
    "gru_dt": lambda: GRUDtNet(N, hidden=16, gru_hidden=12, gap_features=4, time={"unit": "hours"}),
    "bert4rec": lambda: BERT4RecNet(N, hidden=16, heads=2, max_len=WIDE),
    "pop": lambda: PopNet(N),
    "slrc": lambda: SLRCNet(N, hidden=16),
    "decayed_repeat": lambda: DecayedRepeatNet(N, tau=600.0),
}
CAUSAL = [name for name in NETS if name != "bert4rec"]
PRESETS = ["sasrec", "sasrec_large", "tisasrec", "gru4rec", "gru_dt", "bert4rec", "pop", "slrc", "decayed_repeat"]


def make_batch(lengths: list[int], width: int = L, seed: int = 0) -> dict[str, torch.Tensor]:
    """Left-padded rows with ``lengths`` events; gaps of 0 s to ~1 year; next_times = next event's time."""
    generator = torch.Generator().manual_seed(seed)
    batch = {k: torch.zeros(len(lengths), width, dtype=torch.long) for k in ("items", "times", "next_times", "targets")}
    for row, n in enumerate(lengths):
        events = torch.randint(1, N + 1, (n + 1,), generator=generator)
        gaps = torch.tensor([0, 60, 3600, 86400, 31_536_000])[torch.randint(0, 5, (n + 1,), generator=generator)]
        stamps = 1_500_000_000 + torch.cumsum(gaps, 0)
        batch["items"][row, width - n :] = events[:-1]
        batch["targets"][row, width - n :] = events[1:]
        batch["times"][row, width - n :] = stamps[:-1]
        batch["next_times"][row, width - n :] = stamps[1:]
    return batch


def widen(batch: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """The same rows with more left padding."""
    return {k: torch.nn.functional.pad(v, (width - v.shape[1], 0)) for k, v in batch.items()}


def outputs(net: SequentialRecommender, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return net(batch["items"], batch["times"], batch["next_times"])


@pytest.fixture(params=list(NETS))
def net(request) -> SequentialRecommender:
    torch.manual_seed(0)
    return NETS[request.param]().eval()


@pytest.fixture(params=CAUSAL)
def causal_net(request) -> SequentialRecommender:
    torch.manual_seed(0)
    return NETS[request.param]().eval()


def test_forward_gives_one_representation_per_position(net):
    out = outputs(net, make_batch([7, 3, 1]))
    assert out.shape[:2] == (3, L) and torch.isfinite(out).all()


def test_predict_scores_padding_and_every_item(net):
    scores = net.predict(make_batch([7, 3, 1]))
    assert scores.shape == (3, N + 1) and torch.isfinite(scores).all()


def test_training_loss_is_a_finite_scalar_with_a_gradient_path(net):
    loss = net.train().training_loss(make_batch([7, 3, 1]))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()


def test_predict_never_reads_the_targets(net):
    batch = make_batch([7, 3, 1])
    expected = net.predict(batch)
    del batch["targets"]
    torch.testing.assert_close(net.predict(batch), expected)


@pytest.mark.parametrize("first_changed", [2, 5])
def test_later_items_and_timestamps_never_change_earlier_outputs(causal_net, first_changed):
    batch = make_batch([7, 6, 4])
    changed = {k: v.clone() for k, v in batch.items()}
    real = changed["items"][:, first_changed:] > 0
    changed["items"][:, first_changed:] = torch.where(real, (changed["items"][:, first_changed:] % N) + 1, 0)
    # later events now come 1 s apart: the smallest gap in the window, and a very different one
    one_second_apart = batch["times"][:, first_changed - 1 : first_changed] + torch.arange(1, L - first_changed + 1)
    changed["times"][:, first_changed:] = torch.where(real, one_second_apart, 0)
    changed["next_times"][:, first_changed:] = torch.where(real, one_second_apart + 1, 0)
    before, after = outputs(causal_net, batch), outputs(causal_net, changed)
    torch.testing.assert_close(after[:, :first_changed], before[:, :first_changed])
    if not isinstance(causal_net, PopNet):  # the change must reach the later positions
        assert not torch.allclose(after[:, first_changed:], before[:, first_changed:])


def test_more_left_padding_changes_no_real_output(net):
    batch = make_batch([6, 3, 1])
    narrow, wide = outputs(net, batch), outputs(net, widen(batch, WIDE))
    real = batch["items"] > 0
    torch.testing.assert_close(wide[:, -L:][real], narrow[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net.predict(widen(batch, WIDE)), net.predict(batch), atol=1e-5, rtol=1e-5)


def test_bert4rec_sees_the_future_within_the_window():
    torch.manual_seed(0)
    bert = NETS["bert4rec"]().eval()
    batch = make_batch([7])
    changed = {k: v.clone() for k, v in batch.items()}
    changed["items"][0, -1] = changed["items"][0, -1] % N + 1
    assert not torch.allclose(outputs(bert, batch)[:, 0], outputs(bert, changed)[:, 0])


def test_bert4rec_cloze_sequence_keeps_every_event_of_the_window():
    items = torch.tensor([[0, 0, 4, 5], [1, 2, 3, 4]])
    targets = torch.tensor([[0, 0, 5, 6], [2, 3, 4, 5]])
    assert cloze_sequence(items, targets).tolist() == [[0, 4, 5, 6], [2, 3, 4, 5]]


def test_bert4rec_predicts_at_a_mask_appended_after_the_last_event(monkeypatch):
    torch.manual_seed(0)
    bert = NETS["bert4rec"]().eval()
    seen = {}
    real_forward = BERT4RecNet.forward

    def spy(self, items, times, next_times):
        seen["items"] = items.clone()
        return real_forward(self, items, times, next_times)

    monkeypatch.setattr(BERT4RecNet, "forward", spy)
    batch = make_batch([3])
    bert.predict(batch)
    assert seen["items"][0, -1] == N + 1
    assert seen["items"][0, :-1].tolist() == batch["items"][0, 1:].tolist()


def test_bert4rec_mask_token_is_not_a_scored_item():
    bert = NETS["bert4rec"]()
    assert bert.mask_token == N + 1
    assert bert.score(torch.zeros(2, 16)).shape == (2, N + 1)


def test_tisasrec_intervals_are_scaled_by_the_smallest_gap_so_far_and_clipped():
    items = torch.tensor([[0, 1, 2, 3, 4]])
    times = torch.tensor([[0, 100, 100, 160, 170]])
    intervals = personal_intervals(times, items, clip=5)
    assert intervals[0, 0].tolist() == [0, 0, 0, 0, 0]  # padding row
    assert intervals[0, 2, 1:3].tolist() == [0, 0]  # tied events; no non-zero gap yet
    assert intervals[0, 3, 1:4].tolist() == [1, 1, 0]  # smallest gap so far: 60 s (the later 10 s gap is unseen)
    assert intervals[0, 4, 1:5].tolist() == [5, 5, 1, 0]  # now 10 s: 70/10 -> clipped at 5, 10/10


def test_gru_dt_prediction_depends_on_the_query_time_and_gru4rec_does_not():
    torch.manual_seed(0)
    batch = make_batch([5, 3])
    later = {**batch, "next_times": batch["next_times"].clone()}
    later["next_times"][:, -1] += 30 * 86_400
    for name, depends in (("gru_dt", True), ("gru4rec", False)):
        net = NETS[name]().eval()
        assert net.uses_time == depends
        assert torch.allclose(net.predict(batch), net.predict(later)) != depends, name


def test_gru_dt_with_zero_time_transform_is_time_blind():
    net = GRUDtNet(N, hidden=16, gru_hidden=12, time={"transform": "zero"}).eval()
    batch = make_batch([5, 3])
    shifted = {**batch, "times": batch["times"] * 2, "next_times": batch["next_times"] * 2}
    assert not net.uses_time
    torch.testing.assert_close(net.predict(shifted), net.predict(batch))


def test_pop_ranks_items_by_how_often_they_were_training_targets():
    pop = PopNet(5)
    pop.training_loss({"targets": torch.tensor([[0, 3, 3], [2, 3, 2]])})
    pop.training_loss({"targets": torch.tensor([[0, 0, 5]])})
    assert pop.counts.tolist() == [0, 0, 2, 3, 0, 1]
    scores = pop.predict(make_batch([2, 1]))
    assert scores.shape == (2, 6)
    assert scores[0].tolist() == scores[1].tolist() == [0.0, 0.0, 2.0, 3.0, 0.0, 1.0]


def test_pop_counts_are_saved_in_the_state_dict():
    pop = PopNet(4)
    pop.training_loss({"targets": torch.tensor([[1, 4, 4]])})
    restored = PopNet(4)
    restored.load_state_dict(pop.state_dict())
    assert restored.counts.tolist() == [0, 1, 0, 0, 2]


def preset(name: str, num_items: int, max_len: int) -> SequentialRecommender:
    cfg = compose_train([f"model={name}", f"dataset.max_len={max_len}"])
    return instantiate(OmegaConf.to_container(cfg.model.net, resolve=True), num_items=num_items)


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_sasrec_large_has_about_2_6m_parameters_at_ml1m_size():
    assert count(preset("sasrec_large", num_items=3416, max_len=200)) == pytest.approx(2.6e6, rel=0.05)


def test_sasrec_preset_is_small_and_embedding_dominated_at_ml1m_size():
    net = preset("sasrec", num_items=3416, max_len=200)
    assert count(net) < 0.5e6
    assert net.item_embedding.weight.numel() > count(net) / 2


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_trains_and_tests_through_the_real_config(name, tmp_path):
    out = tmp_path / "run"
    metrics = tiny_run(out, tmp_path / "data", f"model={name}")
    written = json.loads((out / "metrics.json").read_text())
    assert written["model"] == name
    assert sorted(written["test"]) == sorted(metric_names())
    assert all(0.0 <= value <= 1.0 for value in written["test"].values())
    assert written["num_params"] == metrics["num_params"] > 0
    assert resolve_run_path(written["best_checkpoint"], out).is_file()  # relative to the run's study folder
