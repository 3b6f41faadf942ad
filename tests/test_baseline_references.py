"""Numerical references for the baselines: each network's forward equals its paper's equations,
written out plainly here (loops, dot products, softmax) with the module's own weights.

The shape, causality and padding tests in ``test_baselines.py`` would let a silent change to a
baseline's arithmetic pass (a dropped position term, an unclipped interval, a wrong gate); these
cannot. Networks are tiny and in eval mode (no dropout); the inputs have left padding, tied
timestamps and gaps from one second to a year.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from deepm3.models.components.attention import MultiHeadSelfAttention, TransformerEncoder
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.components.bert4rec import BERT4RecNet
from deepm3.models.components.gru4rec import GRU4RecNet
from deepm3.models.components.gru_dt import GRUDtNet
from deepm3.models.components.sasrec import SASRecNet
from deepm3.models.components.tisasrec import TiSASRecNet

N = 9  # items
HIDDEN, HEADS = 4, 2
ITEMS = torch.tensor([[0, 3, 1, 7, 2, 5], [5, 9, 4, 4, 8, 6]])
# Row 0: tied events, then gaps of 60, 40 and 10 s (each smaller than the last); row 1: 1 s to a year.
TIMES = torch.tensor([[0, 1_000, 1_000, 1_060, 1_100, 1_110], [10, 11, 3_611, 3_611, 90_000, 31_626_000]])
NEXT_TIMES = torch.tensor([[0, 1_000, 1_060, 1_100, 1_110, 1_170], [11, 3_611, 3_611, 90_000, 31_626_000, 31_626_060]])
Tensor = torch.Tensor


def build(make: type[SequentialRecommender], **kwargs) -> SequentialRecommender:
    torch.manual_seed(0)
    net = make(N, **kwargs).eval()
    with torch.no_grad():  # every bias non-zero, so a dropped bias term shows
        for name, param in net.named_parameters():
            if name.endswith("bias"):
                param.uniform_(-0.5, 0.5)
    return net


def forward(
    net: SequentialRecommender, items: Tensor = ITEMS, times: Tensor = TIMES, next_times: Tensor = NEXT_TIMES
) -> Tensor:
    with torch.no_grad():
        return net(items, times, next_times)


def close(actual: Tensor, expected: Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=2e-5, rtol=1e-4)


# ----- the pieces, written out -------------------------------------------------------------------


def linear(x: Tensor, layer: nn.Linear) -> Tensor:
    return x @ layer.weight.T + layer.bias


def layer_norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def gelu(x: Tensor) -> Tensor:
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def sigmoid(x: Tensor) -> Tensor:
    return 1 / (1 + torch.exp(-x))


def feed_forward(x: Tensor, ffn: nn.Sequential, act: Callable[[Tensor], Tensor]) -> Tensor:
    return linear(act(linear(x, ffn[0])), ffn[3])


def recency(table: nn.Embedding, length: int) -> Tensor:
    """Row j embeds position ``length - 1 - j``: the most recent event is position 0."""
    return torch.stack([table.weight[length - 1 - j] for j in range(length)])


def self_attention(
    x: Tensor,
    items: Tensor,
    att: MultiHeadSelfAttention,
    causal: bool,
    key_terms: Tensor | None = None,
    value_terms: Tensor | None = None,
) -> Tensor:
    """Multi-head attention, one query at a time: ``a_ij = softmax_j(q_i . k_ij / sqrt(d))`` over
    the real keys (``j <= i`` when causal; ``j = i`` always), ``out_i = W_o [sum_j a_ij v_ij] + b_o``.

    ``key_terms[b, i, j]`` / ``value_terms[b, i, j]`` are added to key / value ``j`` as seen from query ``i``.
    """
    batch, length, hidden = x.shape
    d = hidden // att.heads
    q, k, v = linear(x, att.query), linear(x, att.key), linear(x, att.value)
    out = torch.zeros_like(x)
    for b in range(batch):
        for i in range(length):
            keys = [j for j in range(length) if j == i or (items[b, j] > 0 and (not causal or j <= i))]
            mixed = []
            for h in range(att.heads):
                part = slice(h * d, (h + 1) * d)
                key = [k[b, j] + (0 if key_terms is None else key_terms[b, i, j]) for j in keys]
                value = [v[b, j] + (0 if value_terms is None else value_terms[b, i, j]) for j in keys]
                scores = torch.stack([torch.dot(q[b, i, part], kj[part]) / math.sqrt(d) for kj in key])
                weights = torch.exp(scores - scores.max())
                weights = weights / weights.sum()
                mixed.append(sum(w * vj[part] for w, vj in zip(weights, value)))
            out[b, i] = torch.cat(mixed)
    return linear(out, att.out)


def pre_ln_stack(x: Tensor, items: Tensor, encoder: TransformerEncoder, causal: bool, **terms: Tensor) -> Tensor:
    """SASRec's block: ``x + Att(LN(x))``, then ``x + FFN(LN(x))`` (ReLU); a final LayerNorm."""
    for block in encoder.blocks:
        x = x + self_attention(layer_norm(x, block.attention_norm), items, block.attention, causal, **terms)
        x = x + feed_forward(layer_norm(x, block.feed_forward_norm), block.feed_forward, torch.relu)
    return layer_norm(x, encoder.output_norm) * (items > 0)[..., None]


# ----- the references ----------------------------------------------------------------------------


def test_sasrec_is_causal_pre_ln_self_attention_over_item_plus_position_embeddings() -> None:
    net = build(SASRecNet, hidden=HIDDEN, heads=HEADS, blocks=2, max_len=8)
    length = ITEMS.shape[1]
    x = net.item_embedding.weight[ITEMS] + recency(net.positions.embedding, length)
    close(forward(net), pre_ln_stack(x, ITEMS, net.encoder, causal=True))


def personal_intervals_by_hand(times: Tensor, items: Tensor, clip: int) -> Tensor:
    """``r_ij = min(floor(|t_i - t_j| / s_i), clip)``, ``s_i`` the smallest non-zero gap between
    consecutive real events up to ``i`` (1 if none); 0 where ``i`` or ``j`` is padding."""
    batch, length = items.shape
    r = torch.zeros(batch, length, length, dtype=torch.long)
    for b in range(batch):
        real = [j for j in range(length) if items[b, j] > 0]
        for i in real:
            gaps = [int(times[b, j] - times[b, j - 1]) for j in real if j <= i and j - 1 in real]
            s = min([g for g in gaps if g > 0], default=1)
            for j in real:
                r[b, i, j] = min(abs(int(times[b, i]) - int(times[b, j])) // s, clip)
    return r


def test_tisasrec_is_relation_aware_attention_over_clipped_personal_intervals() -> None:
    """``score_ij = q_i . (k_j + P^K_j + R^K_rij)``, ``out_i = sum_j a_ij (v_j + P^V_j + R^V_rij)``
    (Li et al., 2020, eqs. 4-6), inputs = item embeddings only, position and interval tables shared
    by the blocks. Each row's time is its query time, equal to its event's time here."""
    clip = 4
    net = build(TiSASRecNet, hidden=HIDDEN, heads=HEADS, blocks=2, max_len=8, clip=clip)
    length = ITEMS.shape[1]
    r = personal_intervals_by_hand(TIMES, ITEMS, clip)
    assert {0, 1, 2, clip} <= set(r.flatten().tolist())  # unclipped buckets and the clip both occur
    key_terms = recency(net.key_positions.embedding, length)[None, None] + net.interval_keys.weight[r]
    value_terms = recency(net.value_positions.embedding, length)[None, None] + net.interval_values.weight[r]
    expected = pre_ln_stack(
        net.item_embedding.weight[ITEMS], ITEMS, net.encoder, causal=True, key_terms=key_terms, value_terms=value_terms
    )
    close(forward(net, next_times=TIMES), expected)


def test_bert4rec_is_bidirectional_post_ln_attention_with_a_mask_embedding_and_an_output_head() -> None:
    """BERT (Devlin et al.) as BERT4Rec uses it: ``LN(item/mask + position)``, then per block
    ``LN(x + Att(x))`` and ``LN(x + FFN(x))`` (GELU), every real key visible; head ``LN(GELU(W x + b))``."""
    net = build(BERT4RecNet, hidden=HIDDEN, heads=HEADS, blocks=2, max_len=8)
    items = ITEMS.clone()
    items[:, -1] = net.mask_token  # what predict asks: the item after the window
    items[1, 2] = net.mask_token  # and a masked event inside the window, as in training
    length = items.shape[1]
    tokens = torch.stack(
        [
            torch.stack([net.mask_embedding if item == N + 1 else net.item_embedding.weight[item] for item in row])
            for row in items.tolist()
        ]
    )
    x = layer_norm(tokens + recency(net.positions.embedding, length), net.encoder.input_norm)
    for block in net.encoder.blocks:
        x = layer_norm(x + self_attention(x, items, block.attention, causal=False), block.attention_norm)
        x = layer_norm(x + feed_forward(x, block.feed_forward, gelu), block.feed_forward_norm)
    x = x * (items > 0)[..., None]
    expected = layer_norm(gelu(linear(x, net.head[0])), net.head[2])
    close(forward(net, items), expected)


def test_bert4rec_masks_real_events_drawn_below_mask_prob_and_the_last_one_of_a_row_with_none(monkeypatch) -> None:
    """The cloze rule: the window's events (inputs + last target) are masked where a uniform draw
    is below ``mask_prob``, never at padding; a row left without a mask gets its last event masked;
    the loss asks for the masked events, in row order."""
    net = build(BERT4RecNet, hidden=HIDDEN, heads=HEADS, blocks=1, max_len=8, mask_prob=0.5)
    items = torch.tensor([[0, 0, 3, 1, 7, 2], [5, 9, 4, 4, 8, 6]])
    targets = torch.tensor([[0, 0, 1, 7, 2, 8], [9, 4, 4, 8, 6, 3]])
    sequence = [[0, 3, 1, 7, 2, 8], [9, 4, 4, 8, 6, 3]]  # inputs shifted left, last target appended
    draws = torch.tensor(
        [
            [0.1, 0.9, 0.2, 0.7, 0.4, 0.9],  # col 0 is padding; cols 2 and 4 are masked
            [0.9, 0.5, 0.6, 0.9, 0.8, 0.7],
        ]
    )  # nothing below 0.5: the last event is masked
    monkeypatch.setattr(torch, "rand", lambda *size, **kwargs: draws)
    seen: dict[str, Tensor] = {}
    monkeypatch.setattr(
        "deepm3.models.components.bert4rec.next_item_loss",
        lambda net, hidden, goal, loss: seen.setdefault("targets", goal).sum() * 0,
    )
    real_forward = BERT4RecNet.forward

    def spy(self, items: Tensor, times: Tensor, next_times: Tensor) -> Tensor:
        seen["items"] = items.clone()
        return real_forward(self, items, times, next_times)

    monkeypatch.setattr(BERT4RecNet, "forward", spy)
    net.training_loss({"items": items, "targets": targets, "times": TIMES, "next_times": NEXT_TIMES})
    mask = N + 1
    assert seen["items"].tolist() == [[0, 3, mask, 7, mask, 8], [9, 4, 4, 8, 6, mask]]
    assert seen["targets"].tolist() == [sequence[0][2], sequence[0][4], sequence[1][5]]


def gru_by_hand(x: Tensor, real: Tensor, gru: nn.GRU) -> Tensor:
    """Cho et al.'s GRU, one step at a time from ``h = 0`` at each row's first real event
    (padding leaves no trace): ``r = s(W_ir x + b_ir + W_hr h + b_hr)``, ``z`` alike,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) n + z h``; 0 on padding."""
    w_ir, w_iz, w_in = gru.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = gru.weight_hh_l0.chunk(3)
    b_ir, b_iz, b_in = gru.bias_ih_l0.chunk(3)
    b_hr, b_hz, b_hn = gru.bias_hh_l0.chunk(3)
    batch, length, _ = x.shape
    states = torch.zeros(batch, length, gru.hidden_size)
    for b in range(batch):
        h = torch.zeros(gru.hidden_size)
        for t in range(length):
            if not real[b, t]:
                continue
            r = sigmoid(w_ir @ x[b, t] + b_ir + w_hr @ h + b_hr)
            z = sigmoid(w_iz @ x[b, t] + b_iz + w_hz @ h + b_hz)
            n = torch.tanh(w_in @ x[b, t] + b_in + r * (w_hn @ h + b_hn))
            h = (1 - z) * n + z * h
            states[b, t] = h
    return states


def test_gru4rec_is_a_gru_over_item_embeddings_read_out_linearly() -> None:
    net = build(GRU4RecNet, hidden=HIDDEN, gru_hidden=3)
    states = gru_by_hand(net.item_embedding.weight[ITEMS], ITEMS > 0, net.gru.gru)
    close(forward(net), linear(states, net.readout))


def test_gru_dt_feeds_each_gap_since_the_previous_event_and_reads_out_with_the_gap_to_the_query() -> None:
    """Input ``[e_i, tanh(w tau_i + b)]`` with ``tau_i = log1p(gap since the previous event / 1 h)``
    (0 for the window's first event); readout of ``[h_i, tanh(w' tau'_i + b')]`` with ``tau'_i =
    log1p((next_time_i - t_i) / 1 h)``."""
    net = build(GRUDtNet, hidden=HIDDEN, gru_hidden=3, gap_features=2, time={"unit": "hours", "transform": "log1p"})
    batch, length = ITEMS.shape
    since = torch.zeros(batch, length)
    until = torch.zeros(batch, length)
    for b in range(batch):
        for t in range(length):
            if ITEMS[b, t] > 0:
                since[b, t] = (TIMES[b, t] - TIMES[b, t - 1]) / 3600 if t > 0 and ITEMS[b, t - 1] > 0 else 0.0
                until[b, t] = (NEXT_TIMES[b, t] - TIMES[b, t]) / 3600
    step = torch.tanh(
        torch.log1p(since)[..., None] * net.input_gap_features.linear.weight[:, 0] + net.input_gap_features.linear.bias
    )
    query = torch.tanh(
        torch.log1p(until)[..., None] * net.query_gap_features.linear.weight[:, 0] + net.query_gap_features.linear.bias
    )
    states = gru_by_hand(torch.cat([net.item_embedding.weight[ITEMS], step], -1), ITEMS > 0, net.gru.gru)
    close(forward(net), linear(torch.cat([states, query], -1), net.readout))
