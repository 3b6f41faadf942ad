"""CUDA-only checks (skipped without a GPU): device placement of the training step."""

import pytest
import torch

from deepm3.bench import synthetic_batch
from deepm3.models.components.base import next_item_loss
from deepm3.models.components.deepm3 import DeepM3Net

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_padded_positions_do_not_change_the_loss() -> None:
    """The GPU path scores every position and ignores padding; it equals the CPU selection."""
    net = DeepM3Net(20, hidden=8)
    hidden = torch.randn(2, 5, 8)
    targets = torch.tensor([[0, 0, 3, 4, 5], [1, 2, 3, 4, 5]])
    for loss in ("ce", "bpr"):
        torch.manual_seed(0)
        everything = next_item_loss(net, hidden.flatten(0, 1), targets.flatten(), loss)
        torch.manual_seed(0)
        real = targets > 0
        selected = next_item_loss(net, hidden[real], targets[real], loss)
        if loss == "ce":
            assert torch.allclose(everything, selected)
        assert torch.isfinite(everything)


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("method", ["euler", "rk4", "none"])
def test_a_deepm3_training_step_never_synchronises_with_the_host(method: str) -> None:
    device = torch.device("cuda")
    net = DeepM3Net(500, hidden=32, solver={"method": method, "steps": 2}).to(device)
    optimizer = torch.optim.AdamW(net.parameters())
    batch = synthetic_batch(500, 20, 16, device)
    net.training_loss(batch).backward()  # warm-up: lazy CUDA initialisation may synchronise
    optimizer.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any device->host copy or sync now raises
    try:
        optimizer.zero_grad(set_to_none=True)
        net.training_loss(batch).backward()
        optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
