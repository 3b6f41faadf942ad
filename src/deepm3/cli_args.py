"""The command line before Hydra: a config-group choice that names no file is one line.

Hydra composes the config before any of our code runs and reports an unknown option
(``solver=warp``) on many lines; every entry point reads its command line here first. Only the
standard library and :mod:`deepm3.errors` are imported, so a light entry point stays light.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deepm3.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent / "conf"
GROUP_CHOICE = re.compile(r"[+~]*([A-Za-z_][\w/]*)(?:@[\w.]+)?=(.*)")


def check_group_choices(argv: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise one line for a command-line choice of a config group that names none of its files.

    Hydra composes the config before any of our code runs and reports an unknown option
    (``solver=warp``) on many lines; this reads the command line alone, first. Sweeps
    (``solver=euler,rk4``) are checked choice by choice; functions (``glob(*)``) are left to Hydra.
    """
    for arg in argv:
        match = GROUP_CHOICE.fullmatch(arg)
        if match is None:
            continue
        group, value = match.groups()
        folder = conf_dir / group
        if not folder.is_dir() or value in ("", "null") or any(c in value for c in "()[]{}$'\""):
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        for choice in value.split(","):
            if choice.strip() not in options:
                raise ConfigError(f"{group}={choice.strip()} is not a '{group}' config; expected one of {options}")


def run_cli(main: Callable[[], Any], argv: Sequence[str] | None = None) -> None:
    """Start a Hydra entry point after :func:`check_group_choices` on its command line."""
    try:
        check_group_choices(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:  # before Hydra: no logging is configured yet, so one plain line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    main()
