"""The fast solver path must give exactly the numbers of one odeint call per gap."""

import pytest
import torch

from deepm3.models.components.deepm3 import DeepM3Net


def _pair(method: str, steps: int) -> tuple[DeepM3Net, DeepM3Net]:
    torch.manual_seed(0)
    fast = DeepM3Net(30, hidden=8, dropout=0.0, solver={"method": method, "steps": steps, "implementation": "steps"},
                     field={"zero_init": False})
    slow = DeepM3Net(30, hidden=8, dropout=0.0, solver={"method": method, "steps": steps, "implementation": "odeint"},
                     field={"zero_init": False})
    slow.load_state_dict(fast.state_dict())
    return fast, slow


def _inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    items = torch.randint(1, 31, (3, 7), generator=g)
    items[0, :3] = 0  # left padding
    times = torch.cumsum(torch.randint(0, 200_000, (3, 7), generator=g), 1)
    next_times = torch.cat([times[:, 1:], times[:, -1:] + 3_600], 1)
    return items, times, next_times


@pytest.mark.parametrize("method", ["euler", "rk4"])
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_steps_implementation_equals_odeint_bit_for_bit(method: str, steps: int) -> None:
    fast, slow = _pair(method, steps)
    assert torch.equal(fast(*_inputs()), slow(*_inputs()))


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_steps_implementation_has_the_same_gradients(method: str) -> None:
    fast, slow = _pair(method, 2)
    for net in (fast, slow):
        net(*_inputs()).square().sum().backward()
    for (name, a), (_, b) in zip(fast.named_parameters(), slow.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
