"""Worker functions for the multi-process download/extraction tests (issue 14).

They live in their own light module (no torch) so ``spawn`` children start quickly: each
imports only :mod:`deepm3.data.download`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def _outcome(path: Path) -> tuple[str, int, str]:
    data = path.read_bytes()
    return ("ok", len(data), hashlib.sha256(data).hexdigest())


def extract_worker(barrier: Any, results: Any, member: str, archive: str) -> None:
    """Wait for the others, then ``ensure_extracted`` the member; report what it returned."""
    from deepm3.data.download import ensure_extracted
    from deepm3.errors import DataError

    barrier.wait()
    try:
        results.put(
            _outcome(
                ensure_extracted(Path(member), Path(archive), url=None, checksum=None, download=False, progress=False)
            )
        )
    except DataError as exc:
        results.put(("error", 0, str(exc)))
    except Exception as exc:  # pragma: no cover - reported by the test
        results.put(("crash", 0, f"{type(exc).__name__}: {exc}"))


def fetch_worker(barrier: Any, results: Any, member: str, archive: str, url: str, checksum: str) -> None:
    """Wait for the others, then download and extract through ``ensure_extracted``."""
    from deepm3.data.download import ensure_extracted
    from deepm3.errors import DataError

    barrier.wait()
    try:
        results.put(
            _outcome(
                ensure_extracted(Path(member), Path(archive), url=url, checksum=checksum, download=True, progress=False)
            )
        )
    except DataError as exc:
        results.put(("error", 0, str(exc)))
    except Exception as exc:  # pragma: no cover - reported by the test
        results.put(("crash", 0, f"{type(exc).__name__}: {exc}"))
