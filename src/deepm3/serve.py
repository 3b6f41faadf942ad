"""``python -m deepm3.serve run=<run dir>``: the HTTP server of a trained run (docs/serving.md).

The command only: the server is :mod:`deepm3.server` (its entry point :mod:`deepm3.server.cli`),
the Python API it serves is :mod:`deepm3.recommender`. The names below are re-exported so code
written against ``deepm3.serve`` (where the API used to live) keeps working; new code imports
``deepm3.Recommender`` or :mod:`deepm3.recommender`.
"""

from deepm3.recommender import (
    MAX_SECONDS,
    NOTHING_LEFT,
    UNKNOWN_ITEM_POLICIES,
    Recommendations,
    Recommender,
    empty_reason,
    to_seconds,
)

__all__ = [
    "MAX_SECONDS",
    "NOTHING_LEFT",
    "UNKNOWN_ITEM_POLICIES",
    "Recommendations",
    "Recommender",
    "empty_reason",
    "to_seconds",
]

if __name__ == "__main__":
    from deepm3.server.cli import main

    main()
