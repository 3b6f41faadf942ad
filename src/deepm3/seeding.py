"""Seeds derived from a run's seed: one place, so the data order and the training step agree.

Low in the house on purpose: :mod:`deepm3.data.datamodule` (the epoch shuffle) and
:mod:`deepm3.run.callbacks` (the per-step reseed) both import it, and it imports nothing of deepm3.
"""

from __future__ import annotations


def epoch_seed(seed: int, epoch: int) -> int:
    """A distinct, reproducible seed for each (run seed, epoch)."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)
