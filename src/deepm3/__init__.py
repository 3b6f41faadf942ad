"""deepm3: continuous-time sequential recommendation with neural ODEs."""

from typing import Any

from deepm3.errors import ConfigError, DataError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "Recommender", "__version__"]


def __getattr__(name: str) -> Any:
    """Import ``Recommender`` (and with it torch) only when asked for, so ``import deepm3`` stays light."""
    if name == "Recommender":
        from deepm3.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'deepm3' has no attribute {name!r}")
