"""Atomic writes: a crash never leaves a half-written file that a later run would trust.

Files come out with the mode a plain ``open()`` would give (``0666`` less the umask), or keep
the mode of the file they replace; ``mkstemp``'s private ``0600`` never reaches a user.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The result has the replaced file's mode, else the mode the umask gives a new file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _mode_for(target, 0o666))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def umask() -> int:
    """The process umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, hence the fallback only)
    os.umask(mask)
    return mask


def default_mode(base: int = 0o666) -> int:
    """The mode a new file (``base=0o666``) or folder (``0o777``) gets from the umask."""
    return base & ~umask()


def _mode_for(target: Path, base: int) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)  # replacing a file keeps its mode
    except OSError:
        return default_mode(base)


def publish_dir(tmp: str | os.PathLike[str]) -> None:
    """Give a folder made by ``mkdtemp`` (``0700``) the mode the umask gives a new folder."""
    os.chmod(tmp, default_mode(0o777))


def check_writable_dir(path: str | os.PathLike[str], key: str) -> None:
    """Raise a one-line :class:`~deepm3.errors.DataError` unless files can be made in ``path``.

    Checked on ``path``, or the nearest folder above it that exists (``path`` is then made
    later), without writing anything: a run fails here rather than after an epoch of training.
    """
    from deepm3.errors import DataError

    folder = Path(path).expanduser().absolute()
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise DataError(f"{key}={path}: {existing} is not a folder; expected a folder to write the run into")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"{key}={path}: cannot write into {existing} (read-only); choose a writable folder")


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON atomically (sorted keys, so diffs between runs stay readable)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
