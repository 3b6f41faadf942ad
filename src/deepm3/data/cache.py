"""Processed data cached on disk, keyed by the source's identity and the preprocessing config."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from deepm3.data.preprocess import PreprocessConfig, build_sequences
from deepm3.data.processed import ProcessedData
from deepm3.data.sources.base import InteractionSource
from deepm3.errors import DataError
from deepm3.io import publish_dir

log = logging.getLogger(__name__)

PIPELINE_VERSION = 1  # bump when preprocessing code changes what it produces


def cache_key(source: InteractionSource, config: PreprocessConfig) -> str:
    """Short hash of everything that determines the processed data."""
    payload = {"version": PIPELINE_VERSION, "source": source.identity(), "preprocess": config.as_dict()}
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def load_or_build(source: InteractionSource, config: PreprocessConfig, cache_dir: Path) -> tuple[ProcessedData, Path]:
    """Return the processed data and its folder, building and caching it on a miss.

    The folder is built under a temporary name and renamed into place, so an interrupted
    build never leaves a folder that looks complete.
    """
    folder = Path(cache_dir).expanduser() / f"{source.name}-{cache_key(source, config)}"
    if ProcessedData.is_complete(folder):
        log.info("processed data from cache: %s", folder)
        return ProcessedData.load(folder), folder
    log.info("preprocessing %s -> %s", source.name, folder)
    data = build_sequences(source.read(), config, source=source.name)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as exc:  # read-only or full: say which folder, not a traceback
        raise DataError(
            f"{folder.parent}: cannot write the processed-data cache there ({exc.strerror or exc});"
            " point paths.data_dir (or dataset.cache_dir) at a writable folder"
        ) from None
    try:
        data.save(tmp)
        publish_dir(tmp)  # mkdtemp's 0700 would hide a shared cache from other users
        try:
            os.replace(tmp, folder)  # refused when another build already put a folder there
        except OSError:
            if not ProcessedData.is_complete(folder):  # damaged by hand: replace it
                shutil.rmtree(folder, ignore_errors=True)
                os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ProcessedData.load(folder), folder
