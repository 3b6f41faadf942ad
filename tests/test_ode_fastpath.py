"""The fast solver path must give exactly the numbers of one odeint call per gap."""

import pytest
import torch

from deepm3.models.components.deepm3 import DeepM3Net


def _pair(method: str, steps: int) -> tuple[DeepM3Net, DeepM3Net]:
    torch.manual_seed(0)
    fast = DeepM3Net(
        30,
        hidden=8,
        dropout=0.0,
        solver={"method": method, "steps": steps, "implementation": "steps"},
        field={"zero_init": False},
    )
    slow = DeepM3Net(
        30,
        hidden=8,
        dropout=0.0,
        solver={"method": method, "steps": steps, "implementation": "odeint"},
        field={"zero_init": False},
    )
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


# --- a torchdiffeq without the internals the fast path uses -----------------------------------

FALLBACK_SCRIPT = """
import sys, warnings
import torch
import torchdiffeq  # the public package loads as usual ...
sys.modules["torchdiffeq._impl.odeint"] = None  # ... but its private modules cannot be imported
sys.modules["torchdiffeq._impl.solvers"] = None
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from deepm3.models.components import ode
    from deepm3.models.components.deepm3 import DeepM3Net
    inputs = torch.load(sys.argv[1], weights_only=True)
    outputs = {}
    for method in ("euler", "rk4"):
        torch.manual_seed(0)
        net = DeepM3Net(30, hidden=8, dropout=0.0, solver={"method": method, "steps": 2, "implementation": "steps"},
                        field={"zero_init": False})
        assert net.ode.implementation == "odeint"
        outputs[method] = net(*inputs).detach()
assert not ode.FAST_PATH
torch.save({"outputs": outputs, "warnings": [str(w.message) for w in caught if w.category is RuntimeWarning]},
           sys.argv[2])
"""


def test_without_torchdiffeq_internals_odeint_gives_the_same_numbers_after_one_warning(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    from deepm3.models.components import ode

    assert ode.FAST_PATH  # the pinned torchdiffeq has them: the fast path is what the tests above compare
    inputs, result = tmp_path / "inputs.pt", tmp_path / "fallback.pt"
    torch.save(_inputs(), inputs)
    done = subprocess.run(
        [sys.executable, "-c", FALLBACK_SCRIPT, str(inputs), str(result)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fallback = torch.load(result, weights_only=True)
    assert len(fallback["warnings"]) == 1, fallback["warnings"]
    assert "torchdiffeq.odeint instead (same numbers, slower)" in fallback["warnings"][0]
    for method in ("euler", "rk4"):
        torch.manual_seed(0)
        fast = DeepM3Net(30, hidden=8, dropout=0.0, solver={"method": method, "steps": 2}, field={"zero_init": False})
        assert fast.ode.implementation == "steps"
        assert torch.equal(fast(*_inputs()), fallback["outputs"][method]), method


def test_the_cached_step_grid_follows_the_module_to_another_dtype() -> None:
    from deepm3.models.components.ode import GapODE, VectorField

    torch.manual_seed(0)
    ode = GapODE(VectorField(4, 8, zero_init=False), method="rk4", steps=3)
    h, tau = torch.randn(2, 4), torch.tensor([0.5, 2.0])
    ode(h, tau)  # caches the float32 intervals
    ode.double()
    assert all(t.dtype == torch.float64 for interval in ode._grid_intervals() for t in interval)
    assert ode(h.double(), tau.double()).dtype == torch.float64
