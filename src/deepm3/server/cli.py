"""``python -m deepm3.serve run=<run dir> [host=127.0.0.1] [port=8000]``: serve a run under uvicorn.

Bad options and run dirs stop with one line on stderr and exit status 1, as the other
command-line entry points do (``conf/serve.yaml`` lists the options).
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from deepm3.cli_args import run_cli
from deepm3.errors import ConfigError, DeepM3Error
from deepm3.recommender import Recommender
from deepm3.run_dir import SNAPSHOT_FILE, locate_run

log = logging.getLogger(__name__)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def _positive(cfg: DictConfig, key: str, allow_zero: bool = False) -> int:
    value = OmegaConf.select(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ConfigError(f"{key}={value!r}; expected a {'non-negative' if allow_zero else 'positive'} integer")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def snapshot_path(setting: object, run: Path) -> Path | None:
    """``state.snapshot``: ``auto`` -> ``<run dir>/serve_state.pt``, a path, or ``None`` (off)."""
    if setting is None:
        return None
    if setting == "auto":
        return locate_run(run)[0] / SNAPSHOT_FILE
    if not isinstance(setting, str) or not setting.strip():
        raise ConfigError(f"state.snapshot={setting!r}; expected auto, a file path, or null")
    path = Path(setting).expanduser()
    if path.is_dir():
        raise ConfigError(f"state.snapshot={setting}: a folder; expected a file path")
    return path


def serve(cfg: DictConfig) -> None:
    """Check the options, load the run, and serve until interrupted."""
    import uvicorn  # the serve extra; imported here so a config error is reported without it

    from deepm3.server.app import Limits, create_app
    from deepm3.server.guard import ConnectionLimits, guarded_protocol

    if OmegaConf.is_missing(cfg, "run"):
        raise ConfigError("missing run=; usage: python -m deepm3.serve run=<run dir> [host=127.0.0.1] [port=8000]")
    host = cfg.host
    if not isinstance(host, str) or not host:
        raise ConfigError(f"host={host!r}; expected an address such as 127.0.0.1")
    port = _positive(cfg, "port", allow_zero=True)
    if port > 65535:
        raise ConfigError(f"port={port}; expected 0..65535")
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(f"log_level={cfg.log_level!r}; expected one of {list(LOG_LEVELS)}")
    for key in ("access_log", "batching"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key}={cfg[key]!r}; expected true or false")
    limits = Limits(
        **{
            key: _positive(cfg, f"limits.{key}")
            for key in ("max_body_bytes", "max_batch", "max_events", "body_timeout_s")
        }
    )
    connections = ConnectionLimits(
        header_timeout=_positive(cfg, "limits.header_timeout_s"),
        max_connections=_positive(cfg, "limits.max_connections"),
        health_headroom=_positive(cfg, "limits.health_headroom"),
    )
    keep_alive = _positive(cfg, "limits.keep_alive_s")
    api_key = cfg.api_key
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip() or len(api_key.split()) != 1):
        raise ConfigError("api_key: expected a non-empty string without spaces (or null for no key)")
    if api_key is None and not is_loopback(host):
        raise ConfigError(
            f"host={host} is reachable from other machines, so the write endpoints (/events, /snapshot) need a "
            "key: set DEEPM3_API_KEY (or api_key=...) and send it in an X-API-Key header"
        )
    max_users = None if cfg.state.max_users is None else _positive(cfg, "state.max_users")
    if cfg.threads is not None:
        torch.set_num_threads(_positive(cfg, "threads"))
    run = Path(str(cfg.run)).expanduser()
    snapshot = snapshot_path(cfg.state.snapshot, run)
    rec = Recommender.load(run, device=cfg.device)
    app = create_app(
        rec,
        run=run,
        limits=limits,
        snapshot=snapshot,
        k=_positive(cfg, "k"),
        batching=cfg.batching,
        max_users=max_users,
        api_key=api_key,
    )
    log.info("serving %r on http://%s:%d (stored state: %s)", rec, host, port, app.state.server.info["stored_state"])
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=cfg.log_level,
        access_log=cfg.access_log,
        http=guarded_protocol(connections),  # header timeout, idle shedding, room for /health
        timeout_keep_alive=keep_alive,
        server_header=False,
    )


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: bad input exits with one line on stderr and status 1."""
    try:
        serve(cfg)
    except DeepM3Error as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except ImportError as exc:
        print(
            f"error: {exc.name or exc} is missing; install the serve extra: pip install 'deepm3[serve]'",
            file=sys.stderr,
        )
        sys.exit(1)


def cli() -> None:
    """The console script and ``python -m deepm3.serve``: :func:`main` after a one-line check of the
    command line's config choices and setting names (:mod:`deepm3.cli_args`)."""
    run_cli(main, config_name="serve")
