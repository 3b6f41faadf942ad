"""HTTP serving of a trained run (``python -m deepm3.serve run=<run dir>``; docs/serving.md).

The Python API is :mod:`deepm3.recommender` (:class:`~deepm3.recommender.Recommender`); this package
wraps it in a FastAPI app: request/response models (:mod:`.schemas`), per-user stored state
with snapshots (:mod:`.state`), Prometheus metrics (:mod:`.observe`), micro-batching
(:mod:`.batching`), request limits and body reading (:mod:`.limits`), the service behind the
endpoints (:mod:`.service`), errors as status codes (:mod:`.errors`), the endpoints
(:mod:`.app`), connection guards against slow clients
(:mod:`.guard`) and the Hydra/uvicorn entry point (:mod:`.cli`). It needs the ``serve`` extra
(``pip install deepm3[serve]``); the names below are imported on first use, so the command
line can say so in one line when it is missing.
"""

from typing import Any

__all__ = ["Limits", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from deepm3.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'deepm3.server' has no attribute {name!r}")
