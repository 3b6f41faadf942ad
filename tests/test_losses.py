"""The next-item losses against hand computations on a tiny batch, padding positions included.

The GPU path of ``training_loss`` scores every position, padding too, and relies on the loss
ignoring targets of 0; these tests pin that, with the random BPR negative under control.
"""

from __future__ import annotations

import math

import pytest
import torch

from deepm3.models.components.base import SequentialRecommender, next_item_loss
from deepm3.models.components.gru4rec import GRU4RecNet

N = 3  # items 1..3

EMBEDDING = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]  # row 0 = padding
HIDDEN = [[0.5, 2.0], [1.0, 1.0], [-1.0, 0.5], [2.0, 0.0]]
TARGETS = [2, 0, 3, 1]  # position 1 is padding: no target
NEGATIVES = [3, 1, 1, 2]  # the "random" draw, one per position (padding gets one too)


def tiny_net() -> SequentialRecommender:
    net = GRU4RecNet(N, hidden=2, gru_hidden=2)
    with torch.no_grad():
        net.item_embedding.weight.copy_(torch.tensor(EMBEDDING))
    return net


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def test_bpr_is_the_mean_over_real_targets_of_minus_log_sigmoid_of_positive_minus_negative(monkeypatch) -> None:
    """Padding must neither add a term nor count in the mean's denominator."""
    draws = []

    def fixed_draw(low: int, high: int, size: tuple[int, ...], **kwargs) -> torch.Tensor:
        draws.append((low, high, tuple(size)))
        return torch.tensor(NEGATIVES)

    monkeypatch.setattr(torch, "randint", fixed_draw)
    loss = next_item_loss(tiny_net(), torch.tensor(HIDDEN), torch.tensor(TARGETS), "bpr")
    terms = [
        math.log1p(math.exp(-(dot(h, EMBEDDING[t]) - dot(h, EMBEDDING[n]))))  # -log sigmoid(x) = log(1 + e^-x)
        for h, t, n in zip(HIDDEN, TARGETS, NEGATIVES)
        if t > 0
    ]
    assert len(terms) == 3
    assert loss.item() == pytest.approx(sum(terms) / 3, rel=1e-6)
    assert draws == [(1, N + 1, (4,))]  # negatives are real items 1..N, one per position


def test_bpr_of_a_padded_batch_equals_bpr_of_its_real_positions(monkeypatch) -> None:
    """What the GPU path (every position) and the CPU path (real positions only) compute is the same."""
    real = [i for i, t in enumerate(TARGETS) if t > 0]
    monkeypatch.setattr(torch, "randint", lambda low, high, size, **kw: torch.tensor(NEGATIVES)[: size[0]])
    everything = next_item_loss(tiny_net(), torch.tensor(HIDDEN), torch.tensor(TARGETS), "bpr")
    monkeypatch.setattr(torch, "randint", lambda low, high, size, **kw: torch.tensor(NEGATIVES)[real])
    selected = next_item_loss(tiny_net(), torch.tensor(HIDDEN)[real], torch.tensor(TARGETS)[real], "bpr")
    assert everything.item() == pytest.approx(selected.item(), rel=1e-6)


def test_cross_entropy_is_the_mean_softmax_loss_over_items_one_to_n_at_real_targets() -> None:
    """Column 0 (padding) is not a class; padding positions are ignored."""
    loss = next_item_loss(tiny_net(), torch.tensor(HIDDEN), torch.tensor(TARGETS), "ce")
    terms = []
    for h, t in zip(HIDDEN, TARGETS):
        if t == 0:
            continue
        logits = [dot(h, EMBEDDING[i]) for i in range(1, N + 1)]
        terms.append(math.log(sum(math.exp(z) for z in logits)) - logits[t - 1])
    assert loss.item() == pytest.approx(sum(terms) / len(terms), rel=1e-6)
