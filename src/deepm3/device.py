"""Device selection, once for every entry point (serving, re-evaluation, the benchmark).

``auto`` means the GPU when there is one, else the CPU; a device this machine does not have is
a one-line :class:`~deepm3.errors.DataError` before any work, not a CUDA error deep in a run.
"""

from __future__ import annotations

import torch

from deepm3.errors import DataError


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU. A device that is not there is a one-line error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DataError(f"device={device!r} is not a device; expected auto, cpu, cuda or cuda:<n>") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (resolved.index is not None and resolved.index >= count):
            raise DataError(
                f"device={device!r}: no such CUDA device on this machine ({count} found); use device=cpu or device=auto"
            )
    elif resolved.type not in ("cpu", "cuda", "mps") or (resolved.type == "mps" and not _mps_available()):
        raise DataError(f"device={device!r} is not available here; expected auto, cpu, cuda or cuda:<n>")
    return resolved


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
