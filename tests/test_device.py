"""Device selection lives once (deepm3.device): every entry point gets the same answers and errors."""

from __future__ import annotations

import pytest
import torch

from deepm3.device import resolve_device
from deepm3.errors import DataError


def test_auto_is_the_gpu_when_there_is_one() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu") == resolve_device(torch.device("cpu"))


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda:99", "no such CUDA device on this machine"),
        ("gpu0", "is not a device; expected auto, cpu, cuda or cuda:<n>"),
        ("meta", "is not available here"),
    ],
)
def test_a_device_this_machine_lacks_is_one_line(device: str, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(")) as caught:
        resolve_device(device)
    assert "\n" not in str(caught.value)


def test_every_entry_point_uses_the_one_function() -> None:
    import deepm3.bench
    import deepm3.phase2.robustness
    import deepm3.recommender

    for module in (deepm3.bench, deepm3.phase2.robustness, deepm3.recommender):
        assert module.resolve_device is resolve_device, module.__name__
