"""Self-attention pieces shared by SASRec, TiSASRec and BERT4Rec.

Windows are left-padded, so positions are counted from the right: the most recent event
has position 0 whatever the window width. This is SASRec's own convention (positions
1..L over a left-padded window of fixed width L) made independent of the width, so more
left padding never changes a real position's output.

Padding keys are never attended to; a query that would see no key at all (a padding
position under the causal mask) attends to itself, which keeps the softmax finite and
cannot reach a real position. Padding positions' outputs are zeroed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from deepm3.errors import ConfigError

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def attention_mask(items: torch.Tensor, causal: bool) -> torch.Tensor:
    """``[B, L]`` items -> ``[B, L, L]`` bool, True where query ``i`` may attend to key ``j``.

    Keys must be real events (and not later than ``i`` when ``causal``); the diagonal is
    always allowed so that no row is empty.
    """
    length = items.shape[1]
    allowed = (items > 0)[:, None, :].expand(-1, length, -1)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
    return allowed | torch.eye(length, dtype=torch.bool, device=items.device)


class RecencyPositions(nn.Module):
    """Learned position embeddings indexed by distance from the window's last column."""

    def __init__(self, max_len: int, hidden: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.embedding.weight, std=hidden**-0.5)

    def forward(self, length: int) -> torch.Tensor:
        """``[length, hidden]``: row ``j`` embeds position ``length - 1 - j``."""
        if length > self.max_len:
            raise ConfigError(
                f"window of {length} events is longer than the model's max_len={self.max_len};"
                " set the model's max_len to dataset.max_len"
            )
        index = torch.arange(length - 1, -1, -1, device=self.embedding.weight.device)
        return self.embedding(index)


@dataclass
class RelativeTerms:
    """Relation embeddings added to keys and values per (query, key) pair (TiSASRec).

    ``index[b, i, j]`` selects a row of ``keys``/``values`` (``[K, hidden]``) for query ``i``
    and key ``j``. Applied by gathering ``q_i . keys`` and scattering attention mass onto the
    ``K`` rows, so no ``[B, L, L, hidden]`` tensor is ever built.
    """

    index: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor


class MultiHeadSelfAttention(nn.Module):
    """Scaled dot-product self-attention with optional absolute (per key) and relative
    (per query-key pair) terms added to keys and values after projection."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if heads < 1 or hidden % heads:
            raise ConfigError(f"heads={heads} must be a positive divisor of hidden={hidden}")
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., L, D]`` -> ``[..., heads, L, D / heads]``."""
        *lead, length, dim = x.shape
        return x.reshape(*lead, length, self.heads, dim // self.heads).transpose(-3, -2)

    def forward(
        self,
        x: torch.Tensor,
        allowed: torch.Tensor,
        key_positions: torch.Tensor | None = None,
        value_positions: torch.Tensor | None = None,
        relative: RelativeTerms | None = None,
    ) -> torch.Tensor:
        keys, values = self.key(x), self.value(x)
        if key_positions is not None:
            keys = keys + key_positions
        if value_positions is not None:
            values = values + value_positions
        q, k, v = self._split(self.query(x)), self._split(keys), self._split(values)  # [B, h, L, d]
        scores = q @ k.transpose(-1, -2)
        if relative is not None:
            index = relative.index.unsqueeze(1).expand(-1, self.heads, -1, -1)  # [B, h, L, L]
            rel_keys = self._split(relative.keys)  # [h, K, d]
            scores = scores + torch.einsum("bhid,hkd->bhik", q, rel_keys).gather(-1, index)
        scores = (scores / math.sqrt(q.shape[-1])).masked_fill(~allowed[:, None], float("-inf"))
        probs = self.dropout(scores.softmax(dim=-1))
        out = probs @ v
        if relative is not None:
            mass = probs.new_zeros(*probs.shape[:-1], relative.values.shape[0]).scatter_add_(-1, index, probs)
            out = out + torch.einsum("bhik,hkd->bhid", mass, self._split(relative.values))
        out = out.transpose(-3, -2).flatten(-2)  # [B, L, D]
        return self.out(out)


class TransformerBlock(nn.Module):
    """Attention + position-wise feed-forward, each with a residual connection.

    ``norm_first=True`` (pre-LN, SASRec's ``x + Dropout(g(LayerNorm(x)))``) normalises the
    input of each sub-layer; ``False`` (post-LN, BERT and RecBole) normalises after the residual sum.
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        dropout: float,
        ffn_mult: int = 1,
        activation: str = "relu",
        norm_first: bool = True,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation={activation!r}; expected one of {sorted(ACTIVATIONS)}")
        self.norm_first = norm_first
        self.attention = MultiHeadSelfAttention(hidden, heads, dropout)
        self.feed_forward = nn.Sequential(
            nn.Linear(hidden, ffn_mult * hidden),
            ACTIVATIONS[activation](),
            nn.Dropout(dropout),
            nn.Linear(ffn_mult * hidden, hidden),
        )
        self.attention_norm = nn.LayerNorm(hidden)
        self.feed_forward_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, **terms) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attention(self.attention_norm(x), allowed, **terms))
            return x + self.dropout(self.feed_forward(self.feed_forward_norm(x)))
        x = self.attention_norm(x + self.dropout(self.attention(x, allowed, **terms)))
        return self.feed_forward_norm(x + self.dropout(self.feed_forward(x)))


class TransformerEncoder(nn.Module):
    """A stack of blocks over a left-padded window, causal or bidirectional.

    Pre-LN stacks end with a LayerNorm (their residual stream is otherwise unnormalised);
    post-LN stacks start with one (BERT's embedding LayerNorm).
    """

    def __init__(
        self,
        hidden: int,
        blocks: int,
        heads: int,
        dropout: float,
        causal: bool,
        ffn_mult: int = 1,
        activation: str = "relu",
        norm_first: bool = True,
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ConfigError(f"blocks={blocks}; expected at least 1")
        self.causal = causal
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, heads, dropout, ffn_mult, activation, norm_first) for _ in range(blocks)
        )
        self.input_norm = nn.Identity() if norm_first else nn.LayerNorm(hidden)
        self.output_norm = nn.LayerNorm(hidden) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, items: torch.Tensor, **terms) -> torch.Tensor:
        """``x`` ``[B, L, D]`` (embedded window), ``items`` ``[B, L]`` (for the masks)."""
        allowed = attention_mask(items, self.causal)
        x = self.input_norm(x)
        for block in self.blocks:
            x = block(x, allowed, **terms)
        return self.output_norm(x) * (items > 0).unsqueeze(-1)
