"""Errors that reach users as one line: what was wrong, where, and what was expected."""


class DeepM3Error(Exception):
    """Base class; the CLI prints these as a single line instead of a traceback."""


class DataError(DeepM3Error, ValueError):
    """A data file or table is missing, malformed or empty after filtering."""


class ConfigError(DeepM3Error, ValueError):
    """A configuration value is unknown, of the wrong type, or inconsistent with another."""
