"""Read back what each experiment tracker stored for a run, from its local files only (no network)."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

BLOCK = 32768  # a .wandb file is a LevelDB-style log: 32 KiB blocks of 7-byte-headed chunks
FULL, FIRST, LAST = 1, 2, 4


def wandb_records(run_dir: Path, timeout: float = 30.0) -> list[Any]:
    """Every record of the one offline W&B run under ``run_dir/wandb/`` (wandb's own protobuf).

    ``run.finish()`` can return before wandb's writer process has flushed the log: wait for its exit record.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = _wandb_log(run_dir)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _wandb_log(run_dir: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    (path,) = (run_dir / "wandb").glob("offline-run-*/run-*.wandb")
    raw = path.read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B run log"
    position, chunk, records = 7, b"", []
    while position + 7 <= len(raw):
        room = BLOCK - position % BLOCK
        _, length, kind = struct.unpack("<IHB", raw[position : position + 7])
        if room < 7 or (kind == 0 and length == 0):  # the zero-padded tail of a block
            position += room
            continue
        data = raw[position + 7 : position + 7 + length]
        position += 7 + length
        chunk = data if kind in (FULL, FIRST) else chunk + data
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
    return records


def wandb_run(run_dir: Path) -> dict[str, Any]:
    """The offline run's config, logged metric names, last summary values and saved files."""
    config: dict[str, Any] = {}
    history: set[str] = set()
    summary: dict[str, Any] = {}
    files: set[str] = set()

    def key(item: Any) -> str:
        return item.key or "/".join(item.nested_key)

    for record in wandb_records(run_dir):
        kind = record.WhichOneof("record_type")
        # the config arrives in config records, or in the run record when it was set before the run started
        updates = record.config.update if kind == "config" else record.run.config.update if kind == "run" else ()
        for item in updates:  # a top-level key, or a nested key's path: either way a nested dict here
            *parents, last = [item.key] if item.key else list(item.nested_key)
            node = config
            for parent in parents:
                node = node.setdefault(parent, {})
            node[last] = json.loads(item.value_json)
        if kind == "history":
            history.update(key(i) for i in record.history.item)
        elif kind == "summary":
            summary.update({key(i): json.loads(i.value_json) for i in record.summary.update})
        elif kind == "files":
            files.update(f.path for f in record.files.files)
    return {"config": config, "history": history, "summary": summary, "files": files}


def tensorboard_run(log_dir: Path) -> dict[str, Any]:
    """Scalars (tag -> values), the HPARAMS session's hyper-parameters, and the text summaries."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    scalars = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    hparams: dict[str, Any] = {}
    for content in events.PluginTagToContent("hparams").values():
        data = plugin_data_pb2.HParamsPluginData.FromString(content)
        if data.HasField("session_start_info"):
            for name, value in data.session_start_info.hparams.items():
                hparams[name] = getattr(value, value.WhichOneof("kind"))
    texts = {tag: events.Tensors(tag)[-1].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]}
    return {"scalars": scalars, "hparams": hparams, "texts": texts}


def mlflow_run(run_dir: Path) -> dict[str, Any]:
    """The one MLflow run in ``run_dir/mlflow.db``: params, final metric values, histories' names, artifacts."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("deepm3").experiment_id])
    artifacts = {
        a.path: Path(run.info.artifact_uri.removeprefix("file://")) / a.path
        for a in client.list_artifacts(run.info.run_id)
    }
    return {
        "status": run.info.status,
        "params": run.data.params,
        "metrics": run.data.metrics,
        "val_history": [m.value for m in client.get_metric_history(run.info.run_id, "val/ndcg10")],
        "artifacts": artifacts,
    }
