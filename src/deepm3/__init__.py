"""deepm3: continuous-time sequential recommendation with neural ODEs."""

from deepm3.errors import ConfigError, DataError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "__version__"]
