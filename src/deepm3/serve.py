"""``python -m deepm3.serve run=<run dir>``: the HTTP server of a trained run (docs/serving.md).

The command only: the server is :mod:`deepm3.server` (its entry point :mod:`deepm3.server.cli`),
the Python API it serves is :mod:`deepm3.recommender` (its input checks :mod:`deepm3.history`).
The names below are re-exported so code written against ``deepm3.serve`` (where the API used to
live) keeps working; new code imports ``deepm3.Recommender`` or :mod:`deepm3.recommender`.
"""

from deepm3.history import MAX_SECONDS, UNKNOWN_ITEM_POLICIES, to_seconds
from deepm3.recommender import NOTHING_LEFT, Recommendations, Recommender, empty_reason

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
    from deepm3.server.cli import cli

    cli()
