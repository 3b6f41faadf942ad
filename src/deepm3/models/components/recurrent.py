"""Recurrences over left-padded windows: the padding rotation, written once, and the GRU of
GRU4Rec and the time-aware GRU.

Left padding would otherwise run through the recurrence and change the state the first
real event sees. Each row is rotated so its events start at column 0, packed with its
length, run, and rotated back: the output at a real event depends only on the events up to
it, whatever the padding. :func:`run_left_padded` does that around any packed-sequence
callable; DeepM3's fused inference path (:mod:`.event_loop`) runs its GRU through it too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def run_left_padded(
    x: torch.Tensor, real: torch.Tensor, run: Callable[[PackedSequence], PackedSequence]
) -> torch.Tensor:
    """``run`` over the events of each row of ``x`` ``[B, L, F]`` (``real`` ``[B, L]`` bool, True on
    a suffix of each row): rotated to the front, packed, run, unpacked, rotated back.

    Returns ``[B, L, H]``; at padding positions the values are whatever the unpacked output holds
    there (callers mask them).
    """
    length = x.shape[1]
    lengths = real.sum(dim=1)
    pads = (length - lengths)[:, None]
    columns = torch.arange(length, device=x.device)[None, :]
    to_front = ((columns + pads) % length).unsqueeze(-1)
    packed = pack_padded_sequence(
        x.gather(1, to_front.expand_as(x)), lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
    )
    out, _ = pad_packed_sequence(run(packed), batch_first=True, total_length=length)
    to_back = ((columns - pads) % length).unsqueeze(-1)
    return out.gather(1, to_back.expand(-1, -1, out.shape[-1]))


class LeftPaddedGRU(nn.Module):
    def __init__(self, input_size: int, hidden: int, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.gru = nn.GRU(
            input_size, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, L, F]``; ``real`` ``[B, L]`` bool, True on a suffix of each row.

        Returns ``[B, L, hidden]``, zero on padding.
        """
        return run_left_padded(x, real, lambda packed: self.gru(packed)[0]) * real.unsqueeze(-1)
