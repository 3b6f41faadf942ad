"""The command line before Hydra: a config-group choice that names no file, or a setting the
entry point does not have, is one line.

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


TOP_LEVEL_KEY = re.compile(r"^([A-Za-z_]\w*):", re.MULTILINE)
DEFAULTS_GROUP = re.compile(r"^\s+-\s+(?:override\s+)?([A-Za-z_]\w*)[\w/]*(?:@[\w.]+)?\s*:", re.MULTILINE)


def check_setting_names(argv: Sequence[str], config_name: str, conf_dir: Path = CONF_DIR) -> None:
    """Raise one line for an override of a setting the primary config ``config_name`` does not have
    (``device=cpu`` given to ``deepm3.train``, whose setting is ``trainer.accelerator``).

    Only the first name of a dotted key is checked, against the config file's top-level keys and
    the config groups; ``+key=`` (adding a key) is Hydra's to judge, and so is every key when an
    ``experiment=`` choice is given (an experiment may add settings of its own).
    """
    if any(arg.lstrip("+").startswith("experiment=") for arg in argv):
        return
    text = (conf_dir / f"{config_name}.yaml").read_text()
    known = set(TOP_LEVEL_KEY.findall(text)) | set(DEFAULTS_GROUP.findall(text)) | {"hydra"}
    known.discard("defaults")
    for arg in argv:
        if arg.startswith(("+", "~", "-")) or "=" not in arg:
            continue
        name = re.split(r"[.@=/]", arg, maxsplit=1)[0]
        if name and name not in known:
            raise ConfigError(
                f"{arg}: {config_name} has no setting '{name}'; its settings are {sorted(known)} "
                f"(+{arg} adds a new one)"
            )


def run_cli(main: Callable[[], Any], argv: Sequence[str] | None = None, config_name: str | None = None) -> None:
    """Start a Hydra entry point after :func:`check_group_choices` (and, given the entry point's
    primary ``config_name``, :func:`check_setting_names`) on its command line."""
    args = sys.argv[1:] if argv is None else argv
    try:
        check_group_choices(args)
        if config_name is not None:
            check_setting_names(args, config_name)
    except ConfigError as exc:  # before Hydra: no logging is configured yet, so one plain line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    main()
