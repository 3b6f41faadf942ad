"""Run deepm3's command-line entry points once per probe, all in this one process, and report.

    python -m tests.helpers.cli_probe probes.json results.json   # with the repository on PYTHONPATH

``probes.json`` lists ``{"id", "module", "args", "watch"}``: ``module`` is ``deepm3.train`` or
``deepm3.recommend``, whose Hydra ``main()`` is called with ``sys.argv = [module, *args]``
exactly as ``python -m <module> <args>`` would; ``watch`` lists files and folders that must
not change. ``results.json`` maps each id to the exit status, what went to stderr and stdout,
and the watched files that changed (lock files aside). One process for every probe keeps
the start-up cost (torch, Lightning, Hydra) to a single import; ``tests/test_bad_inputs.py``
starts it, without the capability to override file permissions when it runs as root.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import stat
import sys
import traceback
from pathlib import Path


def snapshot(roots: list[str]) -> dict[str, str]:
    """Content and mode of every file under ``roots`` (lock files aside: they hold no data)."""
    files: dict[str, str] = {}
    for root in map(Path, roots):
        paths = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in paths:
            if path.is_file() and not path.name.endswith(".lock"):
                mode = stat.S_IMODE(path.stat().st_mode)
                files[str(path)] = f"{hashlib.sha256(path.read_bytes()).hexdigest()} {mode:o}"
    return files


def _stderr_handlers() -> list[logging.StreamHandler]:
    """Handlers that libraries bound to the real stderr at import (Lightning's own)."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    return [
        h
        for lg in loggers
        if isinstance(lg, logging.Logger)
        for h in lg.handlers
        if isinstance(h, logging.StreamHandler) and h.stream is sys.__stderr__
    ]


def run_probe(probe: dict) -> dict:
    from hydra.core.global_hydra import GlobalHydra

    module = importlib.import_module(probe["module"])
    before = snapshot(probe.get("watch", []))
    err, out = io.StringIO(), io.StringIO()
    handlers = _stderr_handlers()
    GlobalHydra.instance().clear()
    sys.argv = [str(module.__file__), *probe["args"]]
    code: int | str = 0
    for handler in handlers:
        handler.setStream(err)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                module.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:  # noqa: BLE001 - reported, as a real process would print it
                traceback.print_exc()
                code = "uncaught"
    finally:
        for handler in handlers:
            handler.setStream(sys.__stderr__)
        GlobalHydra.instance().clear()
    after = snapshot(probe.get("watch", []))
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    return {"code": code, "stderr": err.getvalue(), "stdout": out.getvalue(), "changed": changed}


def main() -> None:
    probes_file, results_file = Path(sys.argv[1]), Path(sys.argv[2])  # each probe replaces sys.argv
    results = {probe["id"]: run_probe(probe) for probe in json.loads(probes_file.read_text())}
    results_file.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
