"""``python -m deepm3.bench``: parameters, training step time, batch-1 latency, throughput,
a full-ranking evaluation pass and peak memory for every model, on one device in one run.

Inputs are synthetic tensors of real dataset shapes (speed does not depend on the values).
Timings interleave the models round-robin, so a noisy neighbour slows all of them alike and
the ratios checked against the targets stay meaningful.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import platform
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra import compose
from omegaconf import DictConfig, OmegaConf

from deepm3.device import resolve_device
from deepm3.errors import exit_on_user_error
from deepm3.io import write_atomic, write_json
from deepm3.metrics import target_ranks
from deepm3.models.components.base import SequentialRecommender
from deepm3.models.module import RecModule

log = logging.getLogger(__name__)

TARGETS = {
    "euler latency <= 0.5 x rk4 latency (ml1m)": ("ml1m", "deepm3-euler", "deepm3-rk4", "latency_ms", 0.5),
    "euler train step <= 1.5 x none train step (ml1m)": ("ml1m", "deepm3-euler", "deepm3-none", "train_step_ms", 1.5),
    "deepm3 preset train step <= 0.5 x sasrec_large (ml1m)": (
        "ml1m",
        "deepm3-euler@preset",
        "sasrec_large@preset",
        "train_step_ms",
        0.5,
    ),
    # Speed II: DeepM3's per-event loop against the fused GRU (batch-1 latency at the ML-1M shape)
    "euler latency <= 3 x gru4rec latency (ml1m)": ("ml1m", "deepm3-euler", "gru4rec", "latency_ms", 3.0),
    "none latency <= 1.2 x gru4rec latency (ml1m)": ("ml1m", "deepm3-none", "gru4rec", "latency_ms", 1.2),
    "euler train step <= 1.3 x none train step (ml1m)": ("ml1m", "deepm3-euler", "deepm3-none", "train_step_ms", 1.3),
}
EVAL_PASS_LIMIT_S = 5.0


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def synthetic_batch(
    num_items: int, max_len: int, batch: int, device: torch.device, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A full (unpadded) batch with gaps of minutes to weeks, as real histories have."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, num_items + 1, (batch, max_len + 1), generator=g)
    gaps = (torch.rand(batch, max_len + 1, generator=g) * 14).exp().long() * 60
    times = 1_000_000_000 + gaps.cumsum(1)
    out = {
        "items": items[:, :-1],
        "times": times[:, :-1],
        "next_times": times[:, 1:],
        "targets": items[:, 1:],
        "history_rows": torch.arange(batch).repeat_interleave(max_len),
    }
    out["history_items"] = out["items"].reshape(-1)
    return {k: v.to(device) for k, v in out.items()}


def build_net(overrides: list[str], num_items: int, max_len: int, device: torch.device) -> SequentialRecommender:
    cfg = compose(config_name="train", overrides=[*overrides, f"dataset.max_len={max_len}"])
    return RecModule.from_config(cfg, num_items).net.to(device)  # the module hands the net time.query


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _round_robin(
    tasks: dict[str, Callable[[], Any]], warmup: int, calls: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each task, calls interleaved across tasks."""
    for fn in tasks.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(calls):
        for name, fn in tasks.items():
            times[name].append(_timed(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


def measure_size(
    cfg: DictConfig, rows: dict[str, list[str]], size: DictConfig, device: torch.device
) -> dict[str, dict[str, Any]]:
    """All measurements for one dataset shape."""
    nets = {name: build_net(ov, size.num_items, size.max_len, device) for name, ov in rows.items()}
    batch = synthetic_batch(size.num_items, size.max_len, cfg.batch_size, device)
    single = {k: v[: size.max_len] if k.startswith("history") else v[:1] for k, v in batch.items()}
    results: dict[str, dict[str, Any]] = {
        name: {"params": sum(p.numel() for p in net.parameters())} for name, net in nets.items()
    }

    def train_step(net: SequentialRecommender, optimizer: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            net.training_loss(batch).backward()
            optimizer.step()

        return step

    for net in nets.values():
        net.train()
    steps = {n: train_step(net, torch.optim.AdamW(net.parameters(), lr=1e-4)) for n, net in nets.items()}
    log.info(
        "training steps: %d warm-up + %d timed rounds over %d models", cfg.train_warmup, cfg.train_steps, len(nets)
    )
    for name, sec in _round_robin(steps, cfg.train_warmup, cfg.train_steps, device).items():
        results[name]["train_step_ms"] = sec * 1e3
    for net in nets.values():
        net.eval()
    log.info("batch-1 latency: %d warm-up + %d timed calls per model", cfg.latency_warmup, cfg.latency_calls)
    with torch.inference_mode():
        latency = {n: (lambda net=net: net.predict(single)) for n, net in nets.items()}
        for name, sec in _round_robin(latency, cfg.latency_warmup, cfg.latency_calls, device).items():
            results[name]["latency_ms"] = sec * 1e3
        scoring = {n: (lambda net=net: _rank_batch(net, batch)) for n, net in nets.items()}
        for name, sec in _round_robin(scoring, 1, cfg.throughput_batches, device).items():
            results[name]["throughput_users_s"] = cfg.batch_size / sec
        log.info("throughput and one full evaluation pass of %d users per model", size.num_users)
        eval_size = int(cfg.get("eval_batch_size") or cfg.batch_size)
        eval_batch = (
            batch if eval_size == cfg.batch_size else synthetic_batch(size.num_items, size.max_len, eval_size, device)
        )
        passes = {
            n: (lambda net=net: _eval_pass(net, eval_batch, size.num_users, eval_size)) for n, net in nets.items()
        }
        for name, sec in _round_robin(passes, 0, 1, device).items():
            results[name]["eval_pass_s"] = sec
    return results


def _rank_batch(net: SequentialRecommender, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    scores = net.predict(batch)
    return target_ranks(scores, batch["targets"][:, -1], batch["history_rows"], batch["history_items"])


def _eval_pass(net: SequentialRecommender, batch: dict[str, torch.Tensor], users: int, batch_size: int) -> None:
    """Full-ranking evaluation of ``users`` users (the batch reused, the work identical)."""
    done = 0
    while done < users:
        n = min(batch_size, users - done)
        part = batch if n == batch_size else _head(batch, n)
        _rank_batch(net, part)
        done += n


def _head(batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    length = batch["items"].shape[1]
    return {k: v[: n * length] if k.startswith("history") else v[:n] for k, v in batch.items()}


def _memory_probe(
    queue: mp.Queue, overrides: list[str], size: dict[str, int], batch_size: int, device: str, conf_dir: str
) -> None:
    """Runs in a fresh process: peak memory of one training step above the model's baseline."""
    from hydra import initialize_config_dir

    dev = torch.device(device)
    with initialize_config_dir(version_base="1.3", config_dir=conf_dir):
        net = build_net(overrides, size["num_items"], size["max_len"], dev)
    batch = synthetic_batch(size["num_items"], size["max_len"], batch_size, dev)
    optimizer = torch.optim.AdamW(net.parameters())
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        base = _rss_bytes()
    net.training_loss(batch).backward()
    optimizer.step()
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    queue.put(max(peak, 0) / 2**20)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def measure_memory(
    rows: dict[str, list[str]], size: DictConfig, batch_size: int, device: torch.device
) -> dict[str, float]:
    conf_dir = str(Path(__file__).resolve().parent / "conf")
    ctx = mp.get_context("spawn")
    out: dict[str, float] = {}
    for name, overrides in rows.items():
        queue = ctx.Queue()
        proc = ctx.Process(target=_memory_probe, args=(queue, overrides, dict(size), batch_size, str(device), conf_dir))
        proc.start()
        proc.join()
        out[name] = queue.get() if proc.exitcode == 0 else float("nan")
    return out


def check_targets(results: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each target's measured ratio and whether it holds."""
    checks: dict[str, dict[str, Any]] = {}
    for label, (size, num, den, key, limit) in TARGETS.items():
        if size in results and num in results[size] and den in results[size]:
            ratio = results[size][num][key] / results[size][den][key]
            checks[label] = {"ratio": round(ratio, 3), "limit": limit, "ok": ratio <= limit}
    for model in ("deepm3-euler", "deepm3-euler@preset"):  # equal-size row and the default ~0.8M model
        if "ml1m" in results and model in results["ml1m"]:
            sec = results["ml1m"][model]["eval_pass_s"]
            checks[f"ml1m full-ranking eval pass < {EVAL_PASS_LIMIT_S} s ({model})"] = {
                "seconds": round(sec, 3),
                "limit": EVAL_PASS_LIMIT_S,
                "ok": sec < EVAL_PASS_LIMIT_S,
            }
    return checks


def format_table(results: dict[str, dict[str, dict[str, Any]]], device: str) -> str:
    """A Markdown table: one row per (size, model)."""
    cols = ["params", "train_step_ms", "latency_ms", "throughput_users_s", "eval_pass_s", "peak_mem_mib"]
    lines = [f"Device: {device}", "", "| size | model | " + " | ".join(cols) + " |", "|---|---|" + "---:|" * len(cols)]
    for size, models in results.items():
        for name, row in models.items():
            cells = [_fmt(row.get(c)) for c in cols]
            lines.append(f"| {size} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def run(cfg: DictConfig) -> dict[str, Any]:
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(cfg.device)
    rows = {name: [o.format(hidden=cfg.hidden, width=2 * cfg.hidden) for o in ov] for name, ov in cfg.rows.items()}
    presets = {name: list(ov) for name, ov in (cfg.get("presets") or {}).items()}
    if device.type == "cuda":  # the same networks with the training loop's CUDA graphs off
        presets.update({name: list(ov) for name, ov in (cfg.get("cuda_rows") or {}).items()})
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for size_name, size in cfg.sizes.items():
        every = {**rows, **(presets if size_name == "ml1m" else {})}
        log.info("measuring %s: %s", size_name, ", ".join(every))
        results[size_name] = measure_size(cfg, every, size, device)
        if cfg.measure_memory:
            for name, mib in measure_memory(every, size, cfg.batch_size, device).items():
                results[size_name][name]["peak_mem_mib"] = mib
    report = {
        "device": device_name(device),
        "torch": torch.__version__,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "results": results,
        "targets": check_targets(results),
    }
    table = format_table(results, report["device"])
    targets = "\n".join(f"- {label}: {v} {'OK' if v['ok'] else 'MISSED'}" for label, v in report["targets"].items())
    print(f"{table}\n\nTargets:\n{targets}")
    write_json(cfg.output, report)
    write_atomic(Path(cfg.output).with_suffix(".md"), lambda tmp: tmp.write_text(f"{table}\n\nTargets:\n{targets}\n"))
    return report


@hydra.main(version_base="1.3", config_path="conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    """Hydra entry point: a bad option (``device=cuda`` without a GPU) is one line on stderr."""
    try:
        run(cfg)
    except Exception as exc:
        exit_on_user_error(exc, log)
        raise


if __name__ == "__main__":
    main()
